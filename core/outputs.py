"""Prediction outputs: everything one prediction writes appears together or not at all.

An `OutputSet` stages the table, the file artifacts and `.meta.json` in a hidden folder beside the target
and moves them into place only when the run is complete. An exception, Ctrl-C or SIGTERM (the CLI turns
it into an exception) removes the staging folder, and the previous output set stays untouched until the
new one is complete. Three shapes, chosen by `-o`:

    predictions.csv | .parquet   a table (one row per input row or item) + predictions.csv.meta.json
    map.npy (any other suffix)   a main file + siblings (map.status.npy, map.png) + map.npy.meta.json
    out/  (no suffix)            a folder of artifacts + out/predictions.csv (status per item) + out/meta.json

Replacing an earlier output set removes its files first (listed in its `.meta.json`), so no stale sibling
of another run stays beside new files; a folder output replaces only an earlier prediction folder that holds
nothing but the files its meta.json lists (anything else is refused, never deleted; file-browser droppings
such as .DS_Store excepted). The commit itself (a handful of renames) runs with SIGINT/SIGTERM blocked. An
output that would overwrite an input is refused before any work.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import UserError
from core.io import read_json, write_json

TABLE_SUFFIXES = (".csv", ".parquet")
FOLDER_TABLE = "predictions.csv"
FOLDER_META = "meta.json"
WRITTEN_BY = "sciformer predict"   # marks a .meta.json as a prediction output's (see is_prediction_meta)
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def output_kind(path: Path) -> str:
    """'table', 'folder' or 'file' from the -o path."""
    if path.suffix.lower() in TABLE_SUFFIXES:
        return "table"
    return "folder" if not path.suffix or path.is_dir() or str(path).endswith(os.sep) else "file"


def meta_path(target: Path) -> Path:
    return target / FOLDER_META if output_kind(target) == "folder" else target.with_name(target.name + ".meta.json")


def check_not_input(target: Path, inputs: Iterable[Path]) -> None:
    """Refuse an output that would overwrite (or, for a folder, contain and replace) an input, and one inside
    an input folder (a later run would read the outputs as inputs)."""
    t = target.resolve()
    for inp in inputs:
        i = Path(inp).resolve()
        if t == i or (output_kind(target) == "folder" and i.is_relative_to(t)):
            raise UserError(f"{target}: the output (-o) would overwrite the input {inp}; write the predictions "
                            "somewhere else (e.g. -o predictions.csv, or a new folder)")
        if i.is_dir() and t.is_relative_to(i):
            raise UserError(f"{target}: the output (-o) is inside the input folder {inp}; a later run would read "
                            "the outputs as inputs: write them outside it")


class OutputSet:
    """Staging area of one prediction run. `path(name)` gives where an artifact is written; `append(table)`
    streams output rows; `commit(meta)` moves everything into place."""

    def __init__(self, target: Path, inputs: Iterable[Path] = ()):
        self.target = Path(target)
        self.kind = output_kind(self.target)
        self.inputs = [Path(p).resolve() for p in inputs]
        check_not_input(self.target, self.inputs)
        _check_parents(self.target)
        if self.target.exists():
            (_check_replaceable_folder if self.kind == "folder" else _check_replaceable_file)(self.target)
        self.files: list[str] = []
        self._table_writer: _TableWriter | None = None
        self.staging: Path | None = None

    # -- staging ---------------------------------------------------------------------------------------
    def __enter__(self) -> "OutputSet":
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.partial-", dir=self.target.parent))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._table_writer is not None:
            self._table_writer.close()
        if self.staging is not None and self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)

    def _final(self, name: str) -> Path:
        if self.kind == "folder":
            if not name or name.startswith(".") or Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"artifact name {name!r} must be a relative path inside the output folder")
            return self.target / name
        if name == "":
            return self.target
        if not name.startswith("."):
            raise ValueError(f"artifact name {name!r}: a file output has siblings named '.<suffix>'")
        return self.target.with_name(self.target.stem + name)

    def path(self, name: str = "") -> Path:
        """Staging path of an artifact (create parent folders); see `core.task.Prediction.files` for names."""
        final = self._final(name)
        if final.resolve() in self.inputs:
            raise UserError(f"{final}: this output file would overwrite the input; choose another -o")
        rel = final.relative_to(self.target) if self.kind == "folder" else Path(final.name)
        staged = self.staging / rel
        staged.parent.mkdir(parents=True, exist_ok=True)
        if name not in self.files:
            self.files.append(name)
        return staged

    def write(self, name: str, content: Any) -> None:
        """An artifact: np.ndarray -> .npy, bytes, str, or a callable(path) that writes the file."""
        path = self.path(name)
        if callable(content):
            content(path)
        elif isinstance(content, np.ndarray):
            with open(path, "wb") as f:  # np.save(path) would append .npy to a name without it
                np.save(f, content)
        elif isinstance(content, (bytes, bytearray)):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            raise TypeError(f"artifact {name!r}: cannot write a {type(content).__name__}")

    def append(self, table: pd.DataFrame) -> None:
        """Output rows: the output itself for a table output, predictions.csv inside a folder output."""
        if self.kind == "file":
            raise ValueError("a file output (-o x.npy) has no table; return artifacts instead")
        if self._table_writer is None:
            name = "" if self.kind == "table" else FOLDER_TABLE
            self._table_writer = _TableWriter(self.path(name))
        self._table_writer.write(table)

    # -- commit -------------------------------------------------------------------------------------------
    def commit(self, meta: dict[str, Any]) -> None:
        if self._table_writer is not None:
            self._table_writer.close()
            self._table_writer = None
        if self.kind != "folder" and "" not in self.files:
            raise RuntimeError(f"{self.target}: the task wrote no main output")
        write_json(self.staging / "meta", {"written_by": WRITTEN_BY, **meta, "files": sorted(self.files)})
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)  # the renames below are not interrupted
        try:
            if self.kind == "folder":
                self._commit_folder()
            else:
                self._commit_files()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _commit_files(self) -> None:
        meta = meta_path(self.target)
        earlier = _prediction_meta(meta) or {}
        previous = earlier.get("files", [])
        # siblings are named after the stem, so lifted.csv and lifted.json share lifted.skeleton.png: a sibling
        # another prediction of the same stem wrote may be replaced, one that some other program wrote not
        ours = set(previous) | {n for m in self.target.parent.glob(f"{glob_escape(self.target.stem)}.*.meta.json")
                                if (other := _prediction_meta(m)) for n in other.get("files", []) if n}
        clobbered = [str(self._final(n)) for n in self.files if n not in ours and self._final(n).exists()]
        if clobbered:
            raise UserError(f"{self.target}: would replace {', '.join(clobbered)}, which no earlier prediction "
                            "wrote; move it or choose another -o")
        meta.unlink(missing_ok=True)           # from here on the old set is visibly incomplete
        for name in previous:                  # no stale sibling of the previous run survives
            if name not in self.files:
                stale = self._final(name)
                if stale.resolve() not in self.inputs:
                    stale.unlink(missing_ok=True)
        for name in sorted(self.files, key=lambda n: n == ""):   # siblings first, the main output last
            os.replace(self.staging / self._final(name).name, self._final(name))
        os.replace(self.staging / "meta", meta)
        self.staging.rmdir()

    def _commit_folder(self) -> None:
        os.replace(self.staging / "meta", self.staging / FOLDER_META)
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
        os.replace(self.staging, self.target)
        self.staging = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def is_prediction_meta(meta: Any) -> bool:
    """A .meta.json this module wrote (older ones lack the marker but list their files and row counts)."""
    return isinstance(meta, dict) and (meta.get("written_by") == WRITTEN_BY
                                       or {"files", "rows_out", "domain"} <= meta.keys())


def _os_dropping(rel: str) -> bool:
    """Files a file browser or notebook leaves in any folder it shows (Finder, Explorer, Jupyter): replacing an
    output folder may delete them (a prediction artifact's name never starts with '.')."""
    parts = rel.split("/")
    return (parts[-1] in {".DS_Store", "Thumbs.db", "desktop.ini"} or parts[-1].startswith("._")
            or ".ipynb_checkpoints" in parts[:-1])


def _prediction_meta(meta_file: Path) -> dict | None:
    try:
        meta = read_json(meta_file) if meta_file.exists() else None
    except (OSError, ValueError):
        return None
    return meta if is_prediction_meta(meta) else None


def _check_replaceable_file(target: Path) -> None:
    """A table or file output replaces only an earlier prediction's (its .meta.json beside it): a data table or
    an array that happens to have the name is never overwritten."""
    if target.is_dir():
        raise UserError(f"{target}: is a folder; a {target.suffix} output is a file: choose another -o "
                        "(or a name without a suffix for a folder output)")
    if _prediction_meta(meta_path(target)) is None:
        raise UserError(f"{target}: the file exists and is not an earlier prediction output (no "
                        f"{meta_path(target).name} beside it); choose a new name for -o, or delete it first, so "
                        "nothing is overwritten by mistake")


def _check_parents(target: Path) -> None:
    """-o under an existing file (results.csv/preds.csv) cannot be created: say so before any work."""
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{target}: {parent} is a file, not a folder, so the output cannot be written "
                                "there; choose another -o")
            return


def _check_replaceable_folder(target: Path) -> None:
    """A folder output replaces the whole folder, so it may only replace an earlier prediction output holding
    nothing but the files its meta.json lists: a model folder, a project folder with its own meta.json or a
    file added to an earlier output would otherwise be deleted."""
    if not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder; choose another -o")
    present = sorted(rel for p in target.rglob("*") if not p.is_dir()
                     and not _os_dropping(rel := p.relative_to(target).as_posix()))
    if not present:
        return
    meta_file = target / FOLDER_META
    meta = _prediction_meta(meta_file)
    if meta is None:
        why = "no meta.json" if not meta_file.exists() else "its meta.json is not a prediction's"
        raise UserError(f"{target}: the folder exists and is not an earlier prediction output ({why}); choose "
                        "a new or empty folder for -o so nothing in it is lost")
    listed = {str(f) for f in meta.get("files", [])} | {FOLDER_META, FOLDER_TABLE}
    extra = [f for f in present if f not in listed]
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise UserError(f"{target}: an earlier prediction output, but it also holds files that run did not "
                        f"write ({shown}); replacing it would delete them: move them out or choose another -o")


class _TableWriter:
    """Streams DataFrames to CSV or Parquet. The Parquet schema is fixed by the first chunk: pass-through
    columns keep the input's types (text for CSV input), predictions are floats and `status` is text, so
    later chunks cast to it; an all-empty column is typed as text, never as null."""

    def __init__(self, path: Path):
        self.path, self.parquet = path, path.suffix.lower() == ".parquet"
        self.header_written, self.writer = False, None
        self.columns: list | None = None

    def write(self, table: pd.DataFrame) -> None:
        # The first chunk fixes the columns: a later chunk in another order or without an optional column
        # (e.g. every file of it failed, so none has an output name) must not shift the CSV's fields.
        if self.columns is None:
            self.columns = list(table.columns)
        elif list(table.columns) != self.columns:
            new = [c for c in table.columns if c not in self.columns]
            if new:
                raise RuntimeError(f"prediction chunks disagree on columns: {new} not in the first chunk's "
                                   f"{self.columns}; the task must give every chunk the same columns")
            table = table.reindex(columns=self.columns)
        if not self.parquet:
            table.to_csv(self.path, mode="a" if self.header_written else "w", header=not self.header_written,
                         index=False)
            self.header_written = True
            return
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        if self.writer is None:
            schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in arrow.schema])
            self.writer = pq.ParquetWriter(self.path, schema)
        self.writer.write_table(arrow.cast(self.writer.schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

