"""Prediction inputs: a `Reader` validates an input before any model loads (`check`, which `validate -i` runs
too, so a file that validates never fails at prediction) and yields `Batch`es of items with ids.

Core readers cover the shapes every domain shares:
- `TableReader`: CSV/Parquet rows, streamed in chunks (or whole, for forecasting after the last row);
  pass-through columns read as text and written back byte-identical; declared numeric columns must be
  finite numbers (the row and column are named otherwise);
- `FilesReader`: one file, a folder of files, or a CSV manifest (`path` column, relative to the manifest);
  a manifest row pointing at a missing file becomes a `missing_file` status, not a failure.
A domain with its own format (an image stack, a keypoint JSON) subclasses `Reader`; `decoding_errors` turns
a parser's failure into a message that names the file and the fix.
"""
from __future__ import annotations

import contextlib
import csv
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import UserError

TABLE_FORMATS = (".csv", ".parquet")
MANIFEST_PATH_COLUMN = "path"


@dataclass
class Batch:
    """Items for one `Task.predict` call. `data` is what the task reads (a DataFrame chunk, a list of
    `FileItem`s, an array tile); `ids` name each item in statuses and errors ("row 12", "clip.wav")."""

    data: Any
    ids: list[str]
    first: int = 0          # index of the first item in the whole input


@dataclass
class FileItem:
    path: Path
    fields: dict[str, str]  # the manifest row's other columns (empty for a file or a folder)
    row: int | None = None  # the manifest's data row (1 = the first after the header), for messages

    def where(self) -> str:
        """'manifest row 3: ' for a manifest's item, '' otherwise (a prefix for per-item messages)."""
        return f"manifest row {self.row}: " if self.row is not None else ""


class Reader:
    """Base class: `formats` lists the accepted input suffixes ("/" = a folder)."""

    formats: tuple[str, ...] = ()
    # output columns that say where a row came from, for `--on-invalid error` messages (default: `required`)
    locate: tuple[str, ...] = ()

    def check(self, path: Path) -> None:
        """Every check `predict` makes before loading a model; raise UserError naming the file and fix."""

    def input_files(self, path: Path) -> list[Path]:
        """Every file the input reads (the input itself, a manifest's rows, a settings file beside it): the
        output (-o) may overwrite or replace none of them."""
        return [Path(path)]

    def batches(self, path: Path, size: int) -> Iterator[Batch]:
        raise NotImplementedError

    def count(self, path: Path) -> int | None:
        """Items in the input, for a progress bar (None = unknown)."""
        return None


def input_suffix(path: Path) -> str:
    return "/" if path.is_dir() else path.suffix.lower()


@contextlib.contextmanager
def decoding_errors(path: Path, what: str = "file"):
    """Turn a parser's exception (encoding, corrupt Parquet/archive, ragged CSV) into a UserError that names
    the file and says what to do, instead of a traceback."""
    try:
        yield
    except UserError:
        raise
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the {what} as UTF-8 "
                        "(e.g. in a spreadsheet: 'CSV UTF-8'), or convert it with `iconv -t utf-8`") from None
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise UserError(f"{path}: cannot be read as a {what} ({exc}); check that the file is complete and "
                        "really in that format") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise UserError(f"{path}: malformed {what}: {exc}; every row needs as many fields as the header "
                        "(quote fields that contain the separator)") from None
    except (ValueError, EOFError) as exc:
        raise UserError(f"{path}: cannot be read as a {what} ({type(exc).__name__}: {exc})") from None


class TableReader(Reader):
    """CSV/Parquet rows. `required`: columns that must exist; `numeric`: columns that must hold finite numbers;
    `text`: columns that must hold text (a Parquet column of numbers there is refused); `forbidden`: columns the
    output will add (an input that has them would be overwritten); `whole`: one batch with every row (for
    predictions that need the whole table)."""

    formats = TABLE_FORMATS

    def __init__(self, required: Sequence[str] = (), numeric: Sequence[str] = (), forbidden: Sequence[str] = (),
                 whole: bool = False, fix: str = "", text: Sequence[str] = ()):
        self.required, self.numeric, self.forbidden = list(required), list(numeric), list(forbidden)
        self.whole, self.fix, self.text = whole, fix, list(text)
        self._rows: tuple[str | None, int] = (None, 0)     # (path, data rows) counted by the last check

    # -- reading ------------------------------------------------------------------------------------------
    def header(self, path: Path) -> list[str]:
        with decoding_errors(path, "table"):
            if input_suffix(path) == ".parquet":
                return list(pq.ParquetFile(path).schema_arrow.names)
            with open(path, newline="", encoding="utf-8-sig") as f:
                first = next(csv.reader(f), None)
        if not first:
            raise UserError(f"{path}: the file is empty; it needs a header row and at least one data row")
        return first

    def chunks(self, path: Path, size: int) -> Iterator[pd.DataFrame]:
        """Every column as text (CSV: the exact characters; an empty field stays ""), so pass-through columns
        come back unchanged; Parquet keeps its own column types."""
        with decoding_errors(path, "table"):
            if input_suffix(path) == ".parquet":
                for batch in pq.ParquetFile(path).iter_batches(batch_size=size):
                    yield batch.to_pandas(types_mapper=pd.ArrowDtype)
                return
            # index_col=False: a first row with an extra field must not turn the first column into an index;
            # pandas then only warns that it drops the extra field, which must be an error, as mid-file
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                for chunk in pd.read_csv(path, chunksize=size, dtype=str, keep_default_na=False, index_col=False,
                                         on_bad_lines="error", encoding="utf-8"):
                    yield chunk

    # -- checks ------------------------------------------------------------------------------------------
    def check(self, path: Path) -> None:
        columns = self.header(path)
        missing = [c for c in self.required if c not in columns]
        if missing:
            shown = ", ".join(map(str, columns[:20])) or "none"
            fix = f"; {self.fix}" if self.fix else ""
            raise UserError(f"{path}: missing column(s) {missing} (found: {shown}){fix}{separator_hint(columns)}")
        twice = sorted({str(c) for c, n in Counter(columns).items() if n > 1})
        if twice:
            raise UserError(f"{path}: column(s) {twice} appear more than once in the header; give every column "
                            "its own name")
        if input_suffix(path) == ".parquet":
            schema = pq.ParquetFile(path).schema_arrow
            for col in self.text:
                kind = schema.field(col).type if col in schema.names else None
                if kind is not None and not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                                             or (pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type))):
                    raise UserError(f"{path}: column {col!r} holds {kind} values, not text; store it as strings")
        clash = [c for c in self.forbidden if c in columns]
        if clash:
            raise UserError(f"{path}: input already has output column(s) {clash}; rename them so nothing is "
                            "overwritten")
        rows = 0
        expected = len(columns)
        for chunk in self.chunks(path, 50_000):  # one full pass: a file that validates parses to the end
            if input_suffix(path) == ".csv" and chunk.shape[1] != expected:
                raise UserError(f"{path}: rows have {chunk.shape[1]} fields but the header has {expected}")
            finite_numbers(chunk, [c for c in self.numeric if c in chunk], path, first_row=rows)
            rows += len(chunk)
        if rows == 0:
            raise UserError(f"{path}: no data rows (only a header); nothing to predict")
        self._rows = (str(path), rows)

    def count(self, path: Path) -> int | None:
        """Data rows: check's exact count when it ran (blank lines and quoted line breaks do not count), else
        line breaks (a quick estimate for the progress bar)."""
        if self._rows[0] == str(path):
            return self._rows[1]
        if input_suffix(path) == ".parquet":
            return pq.ParquetFile(path).metadata.num_rows
        with open(path, "rb") as f:
            return max(0, sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b"")) - 1)

    def batches(self, path: Path, size: int) -> Iterator[Batch]:
        if self.whole:
            frame = pd.concat(list(self.chunks(path, 100_000)), ignore_index=True)
            yield Batch(frame, [f"row {i + 1}" for i in range(len(frame))], 0)
            return
        first = 0
        for chunk in self.chunks(path, size):
            chunk.index = range(first, first + len(chunk))
            yield Batch(chunk, [f"row {first + i + 1}" for i in range(len(chunk))], first)
            first += len(chunk)


def finite_numbers(frame: pd.DataFrame, columns: Sequence[str], path: Path, first_row: int = 0,
                   allow_missing: bool = False) -> np.ndarray:
    """The columns as a float64 array; every cell must be a finite number (an empty cell too, unless
    `allow_missing`: then it becomes NaN). The error names the data row (1 = first row after the header)
    and the column."""
    values = np.empty((len(frame), len(columns)))
    for j, col in enumerate(columns):
        raw = frame[col]
        text = raw.astype(str).str.strip() if raw.dtype == object or isinstance(raw.dtype, pd.StringDtype) else None
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        empty = (text == "").to_numpy() if text is not None else np.isnan(num) & raw.isna().to_numpy()
        bad = ~np.isfinite(num) & ~(empty & allow_missing)
        if bad.any():
            i = int(np.argmax(bad))
            cell = raw.iloc[i]
            why = "is empty" if empty[i] else ("is not finite" if text is None or _is_number(str(cell))
                                              else "is not a number")
            raise UserError(f"{path}: row {first_row + i + 1}, column {col!r}: value {cell!r} {why}; every value "
                            f"of {col!r} must be a finite number{'' if allow_missing else ' (no gaps)'}")
        values[:, j] = num
    return values


def pass_through(fields: dict[str, str], taken: Callable[[str], bool]) -> dict[str, str]:
    """A manifest row's other columns for the output table, so a user's own ids, times or labels come back with
    the predictions; a name the output uses itself (`taken`) gets an `input_` prefix, repeated while it is
    still taken (`status` and `input_status` are both kept: input_status and input_input_status)."""
    out: dict[str, str] = {}
    for k, v in fields.items():
        name = k
        while taken(name) or name in out or (name != k and name in fields):
            name = f"input_{name}"
        out[name] = v
    return out


def separator_hint(columns: Sequence) -> str:
    """A note for a 'missing column' error when the header parsed as one column holding ';', tabs or '|':
    a CSV saved with another separator (spreadsheets in many locales write ';')."""
    names = [str(c) for c in columns]
    seps = [s for s in (";", "\t", "|") if len(names) == 1 and s in names[0]]
    shown = "tab" if seps and seps[0] == "\t" else (f"'{seps[0]}'" if seps else "")
    return f"; the header looks {shown}-separated: save the file with ',' as the separator" if seps else ""


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


class FilesReader(Reader):
    """One file, a folder of files (sorted, those with an accepted suffix), or a CSV manifest with a `path`
    column (relative to the manifest's folder) and any other columns (passed to the task as `fields`)."""

    def __init__(self, suffixes: Sequence[str], what: str = "file"):
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.what = what
        self.formats = (*self.suffixes, "/", ".csv")

    def items(self, path: Path) -> list[FileItem]:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in self.suffixes)
            if not files:
                raise UserError(f"{path}: no {self.what} files ({', '.join(self.suffixes)}) in this folder")
            return [FileItem(p, {}) for p in files]
        if path.suffix.lower() == ".csv" and ".csv" not in self.suffixes:
            with decoding_errors(path, "manifest"):
                frame = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
            if MANIFEST_PATH_COLUMN not in frame:
                raise UserError(f"{path}: a manifest needs a {MANIFEST_PATH_COLUMN!r} column listing the "
                                f"{self.what} files (found: {', '.join(frame.columns[:20]) or 'none'})"
                                f"{separator_hint(frame.columns)}")
            if frame.empty:
                raise UserError(f"{path}: the manifest lists no files")
            blank = [i + 1 for i, v in enumerate(frame[MANIFEST_PATH_COLUMN]) if not str(v).strip()]
            if blank:
                raise UserError(f"{path}: row(s) {', '.join(map(str, blank[:10]))} have an empty "
                                f"{MANIFEST_PATH_COLUMN!r} cell; every row names one {self.what} file (remove "
                                "the blank rows)")
            base = path.parent
            return [FileItem((base / r[MANIFEST_PATH_COLUMN]).resolve(),
                             {k: v for k, v in r.items() if k != MANIFEST_PATH_COLUMN}, i + 1)
                    for i, r in enumerate(frame.to_dict("records"))]
        if path.suffix.lower() not in self.suffixes:
            article = "an" if self.what[:1].lower() in "aeiou" else "a"
            raise UserError(f"{path}: not {article} {self.what} file ({', '.join(self.suffixes)}), a folder or a "
                            "CSV manifest")
        return [FileItem(path, {})]

    def check(self, path: Path) -> None:
        items = self.items(path)
        if len(items) == 1 and not items[0].path.exists():
            raise UserError(f"{items[0].path}: file not found")

    def input_files(self, path: Path) -> list[Path]:
        return [Path(path), *(i.path for i in self.items(path))]

    def count(self, path: Path) -> int | None:
        return len(self.items(path))

    def batches(self, path: Path, size: int) -> Iterator[Batch]:
        """Items in order; a manifest's missing files are items too (the task gives them the status
        `missing_file`, so one bad row never stops the others)."""
        items = self.items(path)
        root = path.resolve() if path.is_dir() else path.parent.resolve()
        for start in range(0, len(items), size):
            part = items[start:start + size]
            yield Batch(part, [_item_id(i.path, root) for i in part], start)


def _item_id(path: Path, root: Path) -> str:
    """A file's name as the user gave it: relative to the folder or manifest when inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)
