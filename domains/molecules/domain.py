"""The molecules domain: SMILES -> molecular properties on the shared core (task: `properties`)."""
from __future__ import annotations

from typing import Any, Mapping

from core.domain import Domain
from domains.molecules.properties import PropertiesTask


class MoleculesDomain(Domain):
    name = "molecules"
    description = "SMILES -> molecular properties (MoLFormer-style linear attention + rotary)"
    tasks = (PropertiesTask,)
    requirements = ("rdkit", "torch-geometric")

    def check_config(self, values: Mapping[str, Any]) -> list[str]:
        problems = []
        d = values["data"]
        if d["dataset"] == "csv" and not d.get("path"):
            problems.append("data.path: required when data.dataset is csv (path to your CSV/Parquet file)")
        if d.get("path") and d["dataset"] != "csv":   # else your file would be silently replaced by the shipped set
            problems.append(f"data.path: {d['path']} is read only with data.dataset=csv (now {d['dataset']}, a shipped "
                            "set); add --set data.dataset=csv, or leave data.path out")
        if d["dataset"] == "csv" and not d.get("targets"):
            problems.append("data.targets: list the target column(s) of your file, e.g. --set 'data.targets=[logS]'")
        if d["split"] == "predefined" and d["dataset"] != "solubility":
            problems.append("data.split: predefined needs a dataset with its own test set (solubility); for your "
                            "own file use data.split=column (a train/val/test column) or data.split=file")
        if d["split"] in ("column", "file") and d["dataset"] != "csv":
            problems.append(f"data.split: {d['split']} reads your own file: set data.dataset=csv and data.path")
        if d["split"] == "file" and not d.get("splits_file"):
            problems.append("data.splits_file: required when data.split is file (a JSON list of "
                            '{"train": [...], "val": [...], "test": [...]} row indices)')
        if values["features"]["max_len"] > values["encoder"]["max_len"]:
            problems.append(f"features.max_len ({values['features']['max_len']}) exceeds encoder.max_len "
                            f"({values['encoder']['max_len']}); lower the first or raise the second")
        if abs(sum(d["sizes"]) - 1.0) > 1e-6:
            problems.append(f"data.sizes: fractions must sum to 1, got {list(d['sizes'])} (sum {sum(d['sizes']):g})")
        return problems

    def self_check(self) -> str:
        """rdkit canonicalizes a SMILES; torch-geometric computes node degrees on a tiny graph."""
        import torch
        from rdkit import Chem
        from torch_geometric.data import Data
        from torch_geometric.utils import degree
        d = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
        canonical = Chem.MolToSmiles(Chem.MolFromSmiles("OCC"))
        return f"rdkit OCC -> {canonical}; pyg degree {degree(d.edge_index[0], 2).tolist()}"
