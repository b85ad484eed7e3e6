"""Featurization and batch prediction for the molecules domain.

Prediction of one chunk (`predict_frame`) is a pure function of (members, rows): it keeps no state between
calls and writes nothing, so the core can run chunks in worker processes and write them in input order.
Repeated canonical SMILES in a chunk are featurized and predicted once; only the model's own (importance-
chosen) descriptors are computed; molecules with the same token count are batched together and run through
the dense encoder path. Profile and numbers: domains/molecules/README.md.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from rdkit import Chem

from core.errors import UserError
from core.readers import pass_through
from domains.molecules import chem
from domains.molecules.features import descriptors_of_mols, mol_to_graph
from domains.molecules.tokenizer import SmilesTokenizer

PREDICTED = ("ok", "largest_fragment")   # statuses that carry a prediction
BATCH_SIZE = 128                         # molecules per packed batch (CPU caches favour small batches)


class DescriptorScaler:
    """Median imputation + standardization of RDKit descriptors, fit on training molecules only."""

    def __init__(self, median, mean, std):
        self.median, self.mean, self.std = (np.asarray(a, np.float32) for a in (median, mean, std))

    @classmethod
    def fit(cls, x: np.ndarray) -> "DescriptorScaler":
        median = np.nan_to_num(np.nanmedian(np.where(np.isnan(x).all(0), 0, x), axis=0))
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


def descriptor_names(meta: Mapping[str, Any]) -> list[str]:
    return list(meta.get("descriptor_names") or [])


def raw_descriptors(smiles: list[str], meta: Mapping[str, Any], mols: list[Chem.Mol] | None = None) -> np.ndarray:
    """The model's descriptors, unscaled: [N, n_extra] (NaN where RDKit fails)."""
    names = descriptor_names(meta) if meta.get("n_extra") else []
    if not names:
        return np.zeros((len(smiles), 0), np.float32)
    return descriptors_of_mols(mols if mols is not None else [Chem.MolFromSmiles(s) for s in smiles], names)


def featurize(smiles: list[str], meta: Mapping[str, Any], mols: list[Chem.Mol] | None = None,
              y: np.ndarray | None = None, descriptors: np.ndarray | None = None) -> list[dict]:
    """Model inputs for canonical SMILES (their parsed molecules, or their raw descriptors, may be given to
    skip recomputing them)."""
    tok = SmilesTokenizer.from_dict(meta["tokenizer"])
    if meta.get("n_extra"):
        if descriptors is None:
            descriptors = raw_descriptors(smiles, meta, mols)
        extra = DescriptorScaler.from_dict(meta["descriptor_scaler"]).transform(descriptors)
    else:
        extra = [None] * len(smiles)
    graphs = [mol_to_graph(s) for s in smiles] if meta.get("graph_dim") else [None] * len(smiles)
    return [{"ids": tok.encode(s, meta["max_len"]), "extra": extra[i], "graph": graphs[i],
             "y": None if y is None else y[i]} for i, s in enumerate(smiles)]


def allowed_elements(meta: Mapping[str, Any]) -> frozenset[str]:
    return chem.ORGANIC_ELEMENTS | frozenset(meta.get("elements") or ())


def parse_inputs(raw: list, meta: Mapping[str, Any]) -> tuple[list[str | None], list[str], dict[str, Chem.Mol]]:
    """(canonical SMILES or None, status) per row, plus one parsed molecule per distinct canonical SMILES."""
    limit, elements = int(meta["max_len"]) - 2, allowed_elements(meta)
    canon: list[str | None] = []
    status: list[str] = []
    mols: dict[str, Chem.Mol] = {}
    for smiles in raw:
        mol, reason = chem.parse_smiles(smiles, limit)
        if mol is not None and any(a.GetSymbol() not in elements for a in mol.GetAtoms()):
            mol, reason = None, "unsupported_element"
        key = Chem.MolToSmiles(mol) if mol is not None else None
        if key is not None and key not in mols:
            # features come from the canonical SMILES, parsed as in training: atom order (and so the last
            # bits of a few descriptors) must not depend on how the input was written
            mols[key] = Chem.MolFromSmiles(key)
        canon.append(key)
        status.append(reason)
    return canon, status, mols


def length_batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped by token count (each group in input order), cut into batches of at most batch_size."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(n, []).append(i)
    return [np.asarray(idx[s:s + batch_size]) for n in sorted(groups) for idx in [groups[n]]
            for s in range(0, len(idx), batch_size)]


def member_outputs(members, examples: list[dict], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Raw outputs of every member, [M, N, K] float32. Molecules of equal token count are batched together
    and go through the dense path (`dense_linear_forward`) where it applies, the packed forward otherwise."""
    from domains.molecules.model import collate_regression, dense_linear_forward, dense_path_applies
    k = len(members[0].metadata["task"]["targets"])
    raw = np.zeros((len(members), len(examples), k), dtype=np.float32)
    dense = [dense_path_applies(m.model) for m in members]
    with torch.inference_mode():
        for idx in length_batches([len(e["ids"]) for e in examples], batch_size):
            batch = collate_regression([examples[i] for i in idx])
            for m, member in enumerate(members):
                on_device = {key: (v.to(member.device) if hasattr(v, "to") else v) for key, v in batch.items()}
                if dense[m]:
                    out = dense_linear_forward(member.model, on_device["ids"].view(len(idx), -1),
                                               on_device.get("extra"))
                else:
                    out = member.model(on_device)
                raw[m, idx] = out.float().cpu().numpy()
    return raw


def predict_smiles(members, smiles: list[str], mols: list[Chem.Mol] | None = None,
                   batch_size: int = BATCH_SIZE, stacked: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Prediction (the ensemble mean, blended with the run's descriptor forest where training chose one; see
    `stacking`) and the ensemble standard deviation, in target units, [N, K] each, for canonical SMILES."""
    from domains.molecules.stacking import blend, forest_inputs
    meta = members[0].metadata["task"]
    k = len(meta["targets"])
    if not smiles:
        return np.zeros((0, k)), np.zeros((0, k))
    mols = mols if mols is not None else [Chem.MolFromSmiles(s) for s in smiles]
    descriptors = raw_descriptors(smiles, meta, mols)
    raw = member_outputs(members, featurize(smiles, meta, descriptors=descriptors), batch_size)
    scale = np.stack([np.asarray(m.metadata["task"]["y_std"]) for m in members])[:, None, :]
    shift = np.stack([np.asarray(m.metadata["task"]["y_mean"]) for m in members])[:, None, :]
    values = raw * scale + shift
    stack = (members[0].metadata.get("calibration") or {}).get("stack") if stacked else None
    # one member has no spread: NaN, not a 0 that would read as certainty
    spread = values.std(0) if len(members) > 1 else np.full(values.shape[1:], np.nan)
    return blend(stack, values.mean(0), lambda: forest_inputs(descriptors, mols)), spread


def predict_frame(members, chunk: pd.DataFrame, first_row: int, on_invalid: str,
                  smiles_column: str | None = None) -> pd.DataFrame:
    """One chunk of a prediction input -> the same rows plus <target>, <target>_unc and status. An input
    column named like one of those (a labelled file: its measured `dG` beside the predicted one) is kept as
    `input_<name>`. `smiles_column`: the input's, when not the training file's."""
    meta = members[0].metadata["task"]
    outputs = {c for t in meta["targets"] for c in (t, f"{t}_unc")} | {"status"}
    names = pass_through({c: c for c in chunk.columns}, outputs.__contains__)    # {new name: input column}
    chunk = chunk.rename(columns={old: new for new, old in names.items() if new != old})
    raw = chunk[smiles_column or meta["smiles_column"]].tolist()
    canon, status, mols = parse_inputs(raw, meta)
    ok = np.array([s in PREDICTED for s in status], dtype=bool)
    if on_invalid == "error" and not ok.all():
        bad = int(np.argmin(ok))
        raise UserError(f"row {first_row + bad + 1} (SMILES {raw[bad]!r}): {status[bad]}; fix or remove it, "
                        "or use --on-invalid mark|skip")
    unique = list(mols)
    mean, std = predict_smiles(members, unique, [mols[s] for s in unique])
    where = {s: i for i, s in enumerate(unique)}
    rows = np.array([where[c] for c, good in zip(canon, ok) if good], dtype=np.int64)
    out = chunk.copy()
    for k, t in enumerate(meta["targets"]):
        col, unc = np.full(len(chunk), np.nan), np.full(len(chunk), np.nan)
        col[ok], unc[ok] = mean[rows, k], std[rows, k]
        out[t], out[f"{t}_unc"] = col, unc
    out["status"] = status
    return out[ok] if on_invalid == "skip" else out
