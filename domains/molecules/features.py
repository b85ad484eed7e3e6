"""Molecule features from RDKit Mol objects: 2D descriptors (all, or a subset chosen by importance on the
training molecules), Morgan fingerprints, and the atom/bond graph.

Every function takes parsed molecules (or SMILES, parsed once) so a prediction parses each molecule once for
canonicalization and features together.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import Descriptors, rdFingerprintGenerator

from domains.molecules.chem import parse_smiles

# Raw `Ipc` grows combinatorially with molecule size (overflowing to ~1e30+ for drug-sized molecules).
# `AvgIpc` is computed from the characteristic polynomial and its cost explodes with size (measured 0.5-5 s
# for single 105-150-atom molecules, 46 s for 1,000 atoms): one such row would stall a whole batch, so it is
# no candidate either (a cost rule: no accuracy number was looked at).
EXCLUDED_DESCRIPTORS = frozenset({"Ipc", "AvgIpc"})
_TABLE = dict(Descriptors._descList)
CANDIDATES = [name for name, _ in Descriptors._descList if name not in EXCLUDED_DESCRIPTORS]
_HUGE = 1e15  # beyond this a descriptor value is numerically meaningless (and float32-unsafe)
# These four recompute the same E-state vector on every call by default (force=1); force=0 reuses the
# copy cached on the (fresh, private) Mol.
_ESTATE_CACHEABLE = frozenset({"MaxAbsEStateIndex", "MaxEStateIndex", "MinAbsEStateIndex", "MinEStateIndex"})


def _mols(smiles: Sequence[str]) -> list[Chem.Mol]:
    mols = []
    for i, smi in enumerate(smiles):
        mol, reason = parse_smiles(smi)
        if mol is None:
            raise ValueError(f"SMILES #{i} {smi!r} rejected: {reason}")
        mols.append(mol)
    return mols


def descriptors_of_mols(mols: Sequence[Chem.Mol], names: Sequence[str]) -> np.ndarray:
    """float32 [N, len(names)]; failures (e.g. Gasteiger-based BCUT2D on unparameterised elements), inf and
    huge values become NaN (callers impute)."""
    unknown = [n for n in names if n not in _TABLE]
    if unknown:
        raise ValueError(f"unknown RDKit descriptors: {unknown}")
    selected = [(n, _TABLE[n], n in _ESTATE_CACHEABLE) for n in names]
    out = np.full((len(mols), len(selected)), np.nan, dtype=np.float64)
    for i, mol in enumerate(mols):
        row = out[i]
        for j, (_, fn, cacheable) in enumerate(selected):
            try:
                value = float(fn(mol, force=0) if cacheable else fn(mol))
            except Exception:  # RDKit raises assorted errors on odd chemistry
                continue
            if math.isfinite(value) and abs(value) < _HUGE:
                row[j] = value
    return out.astype(np.float32)


def rdkit_descriptors(smiles: Sequence[str], names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """RDKit 2D descriptors as float32 [N, D] plus their names (default: every candidate, i.e.
    `Descriptors._descList` minus EXCLUDED_DESCRIPTORS; `names` selects a subset in the given order)."""
    names = list(CANDIDATES if names is None else names)
    return descriptors_of_mols(_mols(smiles), names), names


def select_by_importance(x: np.ndarray, y: np.ndarray, names: Sequence[str], keep_fraction: float,
                         seed: int) -> list[str]:
    """The most important descriptors for predicting y, chosen on the TRAINING molecules only: a random
    forest's impurity importances, descriptors taken in decreasing importance until `keep_fraction` of the
    total importance is covered (fewer descriptors = faster prediction; at 1.0 every informative one).
    Returned in the candidates' order so a descriptor set reads the same whatever the ranking."""
    from sklearn.ensemble import RandomForestRegressor
    if keep_fraction >= 1.0:
        return list(names)
    filled = np.where(np.isnan(x), np.nanmedian(np.where(np.isnan(x).all(0), 0, x), axis=0), x)
    # a molecule lacking a target (sparse multi-target sets): that target's training mean, for ranking only
    y = np.where(np.isnan(y), np.nanmean(y, axis=0), y)
    target = y[:, 0] if y.shape[1] == 1 else y
    rf = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, max_features=0.33, n_jobs=1,
                               random_state=seed).fit(filled, target)
    importance = rf.feature_importances_
    order = np.argsort(-importance, kind="stable")
    covered = np.cumsum(importance[order]) / max(importance.sum(), 1e-12)
    n_keep = int(np.searchsorted(covered, keep_fraction) + 1)
    keep = set(order[:max(1, n_keep)].tolist())
    return [n for i, n in enumerate(names) if i in keep]


def morgan_of_mols(mols: Sequence[Chem.Mol], radius: int = 2, n_bits: int = 2048, counts: bool = False) -> np.ndarray:
    """Morgan/ECFP bit vectors (or counts, capped at 255), uint8 [N, n_bits]."""
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(mols), n_bits), dtype=np.uint8)
    for i, mol in enumerate(mols):
        fp = gen.GetCountFingerprintAsNumPy(mol) if counts else gen.GetFingerprintAsNumPy(mol)
        out[i] = np.minimum(fp, 255)
    return out


def morgan_fingerprints(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048,
                        counts: bool = False) -> np.ndarray:
    return morgan_of_mols(_mols(smiles), radius, n_bits, counts)


# Each categorical feature is one-hot with a trailing "other" slot, so unseen values never crash featurization.
_ATOMIC_NUMS = (1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53)  # H B C N O F Si P S Cl Br I
_DEGREES = (0, 1, 2, 3, 4, 5)
_CHARGES = (-2, -1, 0, 1, 2)
_NUM_HS = (0, 1, 2, 3, 4)
_HYBRIDIZATIONS = (Chem.HybridizationType.SP, Chem.HybridizationType.SP2, Chem.HybridizationType.SP3,
                   Chem.HybridizationType.SP3D, Chem.HybridizationType.SP3D2)
_BOND_TYPES = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC)
ATOM_FEATURE_DIM = sum(len(c) + 1 for c in (_ATOMIC_NUMS, _DEGREES, _CHARGES, _NUM_HS, _HYBRIDIZATIONS)) + 2
BOND_FEATURE_DIM = len(_BOND_TYPES) + 2


def _one_hot(value: object, choices: Sequence[object]) -> list[float]:
    vec = [0.0] * (len(choices) + 1)
    vec[choices.index(value) if value in choices else len(choices)] = 1.0
    return vec


def _atom_features(atom: Chem.Atom) -> list[float]:
    return (_one_hot(atom.GetAtomicNum(), _ATOMIC_NUMS) + _one_hot(atom.GetTotalDegree(), _DEGREES)
            + _one_hot(atom.GetFormalCharge(), _CHARGES) + _one_hot(atom.GetTotalNumHs(), _NUM_HS)
            + _one_hot(atom.GetHybridization(), _HYBRIDIZATIONS)
            + [float(atom.GetIsAromatic()), float(atom.IsInRing())])


def _bond_features(bond: Chem.Bond) -> list[float]:
    onehot = [float(bond.GetBondType() == t) for t in _BOND_TYPES]  # all-zero for dative etc.
    return onehot + [float(bond.GetIsConjugated()), float(bond.IsInRing())]


def mol_to_graph(smiles: str):
    """Heavy-atom graph (torch_geometric Data): x [A, ATOM_FEATURE_DIM], edge_index [2, 2B],
    edge_attr [2B, BOND_FEATURE_DIM]; each bond appears in both directions as message passing expects."""
    from torch_geometric.data import Data
    mol = _mols([smiles])[0]
    x = torch.tensor([_atom_features(a) for a in mol.GetAtoms()], dtype=torch.float32)
    src: list[int] = []
    dst: list[int] = []
    attrs: list[list[float]] = []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        feats = _bond_features(bond)
        src += [i, j]
        dst += [j, i]
        attrs += [feats, feats]
    edge_index = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
    edge_attr = torch.tensor(attrs, dtype=torch.float32).reshape(-1, BOND_FEATURE_DIM)
    return Data(x=x, edge_index=edge_index, edge_attr=edge_attr)
