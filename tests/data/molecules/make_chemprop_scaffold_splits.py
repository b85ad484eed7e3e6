"""Regenerate freesolv_scaffold_balanced_chemprop1.json: chemprop v1's own `scaffold_split(balanced=True)`
on the cleaned FreeSolv molecules (the order `sciformer prepare` writes), seeds 0-4.

chemprop 2.x has no balanced scaffold split (it delegates to astartes), so the reference is v1's code, run
unchanged from its wheel with a two-line stand-in for its dataset class:

    pip download --no-deps -d /tmp/cp1 chemprop==1.6.1 && (cd /tmp/cp1 && unzip -o chemprop-1.6.1-*.whl)
    python tests/data/molecules/make_chemprop_scaffold_splits.py /tmp/cp1
"""
from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

from domains.molecules import chem

SIZES = (0.8, 0.1, 0.1)
OUT = Path(__file__).with_name("freesolv_scaffold_balanced_chemprop1.json")


class _Dataset:
    """What chemprop v1's scaffold_split touches of MoleculeDataset."""

    is_atom_bond_targets = False

    def __init__(self, mols):
        self._mols = list(mols)

    def mols(self, flatten=False):
        return [[m] for m in self._mols]

    def __getitem__(self, i):
        return i

    def __len__(self):
        return len(self._mols)


def load_v1(root: Path):
    rdkit_src = (root / "chemprop/rdkit.py").read_text()
    data_mod = types.ModuleType("cp1.data.data")
    exec(compile(rdkit_src, "chemprop/rdkit.py", "exec"), data_mod.__dict__)  # make_mol, as v1 defines it
    data_mod.MoleculeDataset = lambda items: list(items)
    pkg = types.ModuleType("cp1.data")
    pkg.__path__ = []
    sys.modules.update({"cp1": types.ModuleType("cp1"), "cp1.data": pkg, "cp1.data.data": data_mod})
    scaffold = types.ModuleType("cp1.data.scaffold")
    scaffold.__package__ = "cp1.data"
    exec(compile((root / "chemprop/data/scaffold.py").read_text(), "chemprop/data/scaffold.py", "exec"),
         scaffold.__dict__)
    return scaffold


def main(root: str) -> None:
    v1 = load_v1(Path(root))
    clean, _ = chem.clean_dataset(chem.load_freesolv(), "smiles", ["expt"])
    smiles = clean.smiles.tolist()
    splits = []
    for seed in range(5):
        parts = v1.scaffold_split(_Dataset(smiles), SIZES, balanced=True, seed=seed)
        splits.append({name: sorted(int(i) for i in part) for name, part in zip(("train", "val", "test"), parts)})
    OUT.write_text(json.dumps({
        "source": "chemprop 1.6.1 chemprop/data/scaffold.py scaffold_split(sizes=(0.8, 0.1, 0.1), balanced=True)",
        "molecules": "chem.clean_dataset(chem.load_freesolv()) canonical SMILES, in that order",
        "smiles_sha256": hashlib.sha256("\n".join(smiles).encode()).hexdigest(),
        "splits": splits}, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({len(smiles)} molecules, seeds 0-4)")


if __name__ == "__main__":
    main(sys.argv[1])
