"""Batch prediction that streams: input is read, predicted and written chunk by chunk (millions of rows
never load at once), and the output appears only when complete (temp file, then rename)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from core.domain import Domain
from core.errors import UserError
from core.io import atomic_path, file_sha256, versions, write_json
from core.checkpoint import load_meta
from core.runs import check_domain, check_final_stage, load_members, member_dirs
from core.train import configure_threads, pick_device

log = logging.getLogger("sciformer.predict")
FORMATS = (".csv", ".parquet")
ON_INVALID = ("mark", "skip", "error")


def _format(path: Path, role: str, formats: tuple[str, ...] = FORMATS) -> str:
    suffix = path.suffix.lower()
    if suffix not in formats:
        raise UserError(f"{path}: {role} must end in {' or '.join(formats)} (got {suffix or 'no extension'})")
    return suffix


def read_header(path: Path) -> list[str]:
    """Column names of a CSV/Parquet file ([] for other formats: the domain validates those itself)."""
    if not path.exists():
        raise UserError(f"{path}: input file not found")
    if path.suffix.lower() not in FORMATS:
        return []
    if _format(path, "input") == ".parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty; it needs a header row and at least one data row") from None


def iter_chunks(path: Path, chunk_size: int, text_columns: list[str]) -> Iterator[pd.DataFrame]:
    if _format(path, "input") == ".parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
            yield batch.to_pandas()
    else:
        # the domain's text columns stay text in every chunk (pandas guesses types per chunk)
        yield from pd.read_csv(path, chunksize=chunk_size, dtype={c: "string" for c in text_columns})


def _stable_schema(table: pa.Table) -> pa.Schema:
    """The first written chunk fixes the Parquet schema; an all-missing column must not fix it to null."""
    return pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema])


def count_rows(path: Path) -> int | None:
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as f:
        return max(0, sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b"")) - 1)


def predict_file(domain: Domain, run_dir: Path, input_path: Path, output_path: Path, chunk_size: int = 10_000,
                 on_invalid: str = "mark", device: str = "auto", threads: int = 1, progress: bool = True) -> dict:
    input_path, output_path, run_dir = Path(input_path), Path(output_path), Path(run_dir)
    if chunk_size < 1:
        raise UserError(f"--chunk-size must be a positive number of rows, got {chunk_size}")
    if on_invalid not in ON_INVALID:
        raise UserError(f"--on-invalid must be one of {', '.join(ON_INVALID)}, got {on_invalid!r}")
    # validate everything cheap before any model loads
    check_domain(run_dir, domain)
    check_final_stage(run_dir, domain)
    first_meta = load_meta(member_dirs(run_dir)[0])
    task = first_meta["task"]
    out_format = _format(output_path, "output (-o)", domain.output_formats(task))
    if not input_path.exists():
        raise UserError(f"{input_path}: input file not found")
    _format(input_path, "input (-i)", domain.input_formats(task))
    columns = read_header(input_path)
    domain.validate_input(input_path, columns, task)
    dev = pick_device(device)
    if dev.type == "cpu":
        configure_threads(threads)
    members = load_members(domain, run_dir, dev)
    if not domain.streams:
        with atomic_path(output_path) as tmp:
            stats = domain.predict_whole(members, input_path, tmp, output_path, on_invalid)
        _write_meta(domain, run_dir, input_path, output_path, members, dev, first_meta, stats)
        return stats
    total = count_rows(input_path) if progress else None  # a second full read: only for a visible bar
    stats = {"rows_in": 0, "rows_out": 0, "status": {}}
    writer = None
    with atomic_path(output_path) as tmp:
        bar = tqdm(total=total, disable=not progress, desc="predict", unit="row")
        header = True
        for chunk in iter_chunks(input_path, chunk_size, domain.text_columns(first_meta["task"])):
            out = domain.predict_chunk(members, chunk, stats["rows_in"], on_invalid)
            stats["rows_in"] += len(chunk)
            stats["rows_out"] += len(out)
            if "status" in out:
                for key, n in out["status"].value_counts().items():
                    stats["status"][key] = stats["status"].get(key, 0) + int(n)
            if out_format == ".csv":
                out.to_csv(tmp, mode="w" if header else "a", header=header, index=False)
                header = False
            elif len(out):  # an all-skipped chunk has no types to offer; wait for one with rows
                table = pa.Table.from_pandas(out, preserve_index=False)
                writer = writer or pq.ParquetWriter(tmp, _stable_schema(table))
                writer.write_table(table.cast(writer.schema))
            bar.update(len(chunk))
        bar.close()
        if stats["rows_in"] == 0:
            raise UserError(f"{input_path}: no data rows; nothing to predict")
        if writer is None and out_format == ".parquet":  # every row skipped: still a valid (empty) file
            writer = pq.ParquetWriter(tmp, _stable_schema(pa.Table.from_pandas(out, preserve_index=False)))
        if writer is not None:
            writer.close()
    _write_meta(domain, run_dir, input_path, output_path, members, dev, first_meta, stats)
    return stats


def _write_meta(domain, run_dir, input_path, output_path, members, dev, first_meta, stats) -> None:
    write_json(output_path.with_name(output_path.name + ".meta.json"), {
        "domain": domain.name, "model": str(run_dir), "input": str(input_path),
        "input_sha256": file_sha256(input_path), "members": len(members), "device": str(dev),
        "training": first_meta.get("resolved"), "versions": versions(), **stats})
