"""Prediction at scale: split one large input into shards, predict each shard as an independent job (local
cores, SLURM), gather the outputs in the original order with one `.meta.json` for the whole.

    sciformer split  -i big.csv   -o shards/ -n 8     # shards/shard-0000.csv ... (row order kept)
    sciformer split  -i clips/    -o shards/ -n 8     # shards/shard-0000.csv ... CSV manifests of the files
    sciformer predict ... -i shards/shard-0003.csv -o parts/shard-0003.csv     # any job, any machine
    sciformer gather -i parts/shard-*.csv -o predictions.csv   # the same rows as one predict over big.csv

Splitting streams (memory is bounded by the chunk size, whatever the input); a table keeps its header in
every shard and Parquet keeps its schema; a folder becomes manifests of absolute paths, so a shard predicts
the same files wherever it runs. Gather checks that every shard is present and complete (its `.meta.json`).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import UserError
from core.io import file_sha256, read_json
from core.outputs import FOLDER_META, FOLDER_TABLE, OutputSet, meta_path, output_kind
from core.readers import TableReader, decoding_errors, input_suffix

SHARD = "shard-{:04d}"


def split(input_path: Path, out_dir: Path, n: int, chunk_rows: int = 100_000) -> list[Path]:
    if n < 1:
        raise UserError(f"-n must be a positive number of shards, got {n}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if input_path.is_dir():
        return _split_folder(input_path, out_dir, n)
    suffix = input_suffix(input_path)
    if suffix not in (".csv", ".parquet"):
        raise UserError(f"{input_path}: split takes a table (.csv/.parquet) or a folder of files")
    rows = TableReader().count(input_path)
    if not rows:
        raise UserError(f"{input_path}: no data rows to split")
    per = -(-rows // n)   # ceil: the first shards get one more row, none is empty unless rows < n
    paths = [out_dir / (SHARD.format(k) + suffix) for k in range(n)]
    with decoding_errors(input_path, "table"):
        batches = (pq.ParquetFile(input_path).iter_batches(batch_size=chunk_rows) if suffix == ".parquet" else
                   pacsv.open_csv(input_path, read_options=pacsv.ReadOptions(block_size=1 << 24),
                                  convert_options=pacsv.ConvertOptions(column_types=_all_text(input_path))))
        writer, k, in_shard = None, 0, 0
        for batch in batches:
            start = 0
            while start < batch.num_rows:
                if writer is None:
                    writer = _ShardWriter(paths[k], batch.schema, suffix)
                take = min(per - in_shard, batch.num_rows - start)
                writer.write(batch.slice(start, take))
                start, in_shard = start + take, in_shard + take
                if in_shard == per:
                    writer.close()
                    writer, k, in_shard = None, k + 1, 0
        if writer is not None:
            writer.close()
    for path in paths[k + (1 if in_shard else 0):]:   # fewer rows than shards: the rest are header-only
        _ShardWriter(path, batch.schema, suffix).close()
    return paths


def _all_text(path: Path) -> dict:
    """Every CSV column as text: shards carry the exact characters (007 stays 007)."""
    return {c: pa.string() for c in TableReader().header(path)}


class _ShardWriter:
    """Writes one shard under a hidden name and renames it when complete (a killed split leaves no shard
    that looks whole)."""

    def __init__(self, path: Path, schema: pa.Schema, suffix: str):
        self.tmp = path.with_name(f".{path.name}.partial")
        self.path = path
        self.w = pq.ParquetWriter(self.tmp, schema) if suffix == ".parquet" else pacsv.CSVWriter(self.tmp, schema)

    def write(self, batch) -> None:
        self.w.write(batch)

    def close(self) -> None:
        self.w.close()
        os.replace(self.tmp, self.path)


def _split_folder(folder: Path, out_dir: Path, n: int) -> list[Path]:
    files = sorted(p.resolve() for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserError(f"{folder}: no files to split")
    per = -(-len(files) // n)
    paths = []
    for k in range(n):
        path = out_dir / (SHARD.format(k) + ".csv")
        part = files[k * per:(k + 1) * per]
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_text("path\n" + "".join(f'"{p}"\n' for p in part))
        os.replace(tmp, path)
        paths.append(path)
    return paths


def gather(parts: list[Path], output: Path) -> dict:
    """Concatenate the shard outputs `parts` (in the given order) into `output`."""
    if not parts:
        raise UserError("no shard outputs to gather")
    metas = []
    for p in parts:
        mp = meta_path(p)
        if not mp.exists():
            raise UserError(f"{p}: incomplete (no {mp.name}); rerun its prediction before gathering")
        metas.append(read_json(mp))
    kinds = {output_kind(p) for p in parts}
    if len(kinds) != 1 or output_kind(output) != kinds.pop():
        raise UserError(f"{output}: the shards are {output_kind(parts[0])} outputs; gather them into the same kind")
    with OutputSet(output, parts) as out:
        if output_kind(output) == "folder":
            for p in parts:
                for f in sorted(p.rglob("*")):
                    rel = f.relative_to(p)
                    if f.is_file() and str(rel) not in (FOLDER_META, FOLDER_TABLE):
                        shutil.copy2(f, out.path(str(rel)))
                table = p / FOLDER_TABLE
                if table.exists():
                    _append_table(out, table)
        else:
            for p in parts:
                _append_table(out, p)
        status: dict[str, int] = {}
        for m in metas:
            for k, v in m.get("status", {}).items():
                status[k] = status.get(k, 0) + v
        meta = {**{k: metas[0].get(k) for k in ("domain", "task", "model", "members", "training", "versions")},
                "shards": [{"output": p.name, "input": m.get("input"), "input_sha256": m.get("input_sha256"),
                            "output_sha256": file_sha256(p) if p.is_file() else None} for p, m in zip(parts, metas)],
                "rows_in": sum(m.get("rows_in", 0) for m in metas),
                "rows_out": sum(m.get("rows_out", 0) for m in metas), "status": status}
        out.commit(meta)
    return meta


def _append_table(out: OutputSet, table: Path) -> None:
    for chunk in TableReader().chunks(table, 100_000):
        out.append(chunk)

