"""Batch prediction, one path for every task: check the input (no model yet) -> load the ensemble -> read
batches -> `Task.predict` -> write the output set atomically with `.meta.json`.

Streamed inputs never load at once; `-j N` predicts batches in N worker processes (for tasks whose predict
is a pure function of the batch) and writes them in input order. `--on-invalid` acts on the rows a task
marks as not predicted: `mark` keeps them with their status, `skip` drops them, `error` stops at the first.
`--precision bf16` runs the models under bfloat16 autocast (matrix products in bf16, accumulation and
reductions as torch's autocast lists them), for every domain alike.
"""
from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import torch

from core.config import Config, leaves, value_at, within
from core.cpu import reuse_freed_memory
from core.domain import Domain
from core.errors import UserError
from core.io import file_sha256, versions
from core.outputs import OutputSet, check_not_input, output_kind
from core.progress import Progress
from core.readers import Batch, Reader, input_suffix
from core.runs import first_meta, load_members, run_info, run_task
from core.task import Prediction, Task
from core.train import configure_threads, pick_device

ON_INVALID = ("mark", "skip", "error")
PRECISIONS = ("fp32", "bf16")
log = logging.getLogger(__name__)


def prepare_prediction(domain: Domain, run_dir: Path, input_path: Path, output_path: Path | None = None,
                       config: Config | None = None, on_invalid: str = "mark") -> tuple[Task, Reader, dict[str, Any]]:
    """Every check `predict` makes before a model loads; `validate -i` runs exactly this. The task's reader
    may read `task.on_invalid` (what --on-invalid allows through: a masked pixel is an item to mark under
    mark/skip, a refusal before any model loads under error)."""
    task = run_task(run_dir, domain)
    task.prediction_config, task.on_invalid = config, on_invalid
    if config is not None:
        ignored = settings_a_model_fixes(config, run_info(run_dir), task.prediction_settings)
        if ignored:
            log.warning("ignored: %s. These settings shape the trained model (%s), so prediction keeps the "
                        "model's values; train a new model to change them.", "; ".join(ignored), run_dir)
    model_meta = first_meta(run_dir)["task"]
    reader = task.reader(model_meta)
    if output_path is not None:
        allowed = task.output_formats(model_meta)
        suffix = "/" if output_kind(output_path) == "folder" else output_path.suffix.lower()
        if suffix not in allowed:
            raise UserError(f"{output_path}: the {domain.name}/{task.name} model writes {_formats(allowed)}; "
                            f"choose -o accordingly")
    if not input_path.exists():
        raise UserError(f"{input_path}: input not found")
    if input_suffix(input_path) not in reader.formats:
        raise UserError(f"{input_path}: the {domain.name}/{task.name} model reads {_formats(reader.formats)}; "
                        f"got {input_suffix(input_path) or 'a file without extension'}")
    if output_path is not None:
        check_not_input(output_path, [input_path])
    reader.check(input_path)
    if output_path is not None:   # after check: the files a manifest names are known once it parses
        check_not_input(output_path, reader.input_files(input_path))
    return task, reader, model_meta


# read by every predict command, whatever the model: the task to run, CPU threads, progress output
# how a predict run uses the machine; a `task` the model was not trained for is named like any other setting
# (the workflow's predict rule repeats the model's own, which is no difference)
ALWAYS_AT_PREDICT = ("train.threads", "train.progress")


def settings_a_model_fixes(config: Config, run: dict[str, Any], free: tuple[str, ...]) -> list[str]:
    """'key=value (the model's: value)' for each setting the command gave (--config, --set) that differs from
    the trained model's and is not one a predict command may change (`free`, ALWAYS_AT_PREDICT): it would
    otherwise be silently ignored. A run written before configs were stored has nothing to compare."""
    model = run.get("resolved", {}).get("config")
    if not isinstance(model, dict):
        return []
    out = []
    for key, value in leaves(config.to_given()).items():
        if within(key, (*free, *ALWAYS_AT_PREDICT)):
            continue
        stored = value_at(model, key, _ABSENT)
        if stored != value:
            out.append(f"{key}={value!r} (the model's: {'none' if stored is _ABSENT else repr(stored)})")
    return out


_ABSENT = object()


def _formats(formats) -> str:
    return " or ".join("a folder" if f == "/" else f for f in formats)


def predict_file(domain: Domain, run_dir: Path, input_path: Path, output_path: Path, chunk_size: int = 10_000,
                 on_invalid: str = "mark", device: str = "auto", threads: int = 1, progress: bool = True,
                 jobs: int = 1, config: Config | None = None, precision: str = "fp32") -> dict[str, Any]:
    input_path, output_path, run_dir = Path(input_path), Path(output_path), Path(run_dir)
    if chunk_size < 1:
        raise UserError(f"--chunk-size must be a positive number of items, got {chunk_size}")
    if on_invalid not in ON_INVALID:
        raise UserError(f"--on-invalid must be one of {', '.join(ON_INVALID)}, got {on_invalid!r}")
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    task, reader, model_meta = prepare_prediction(domain, run_dir, input_path, output_path, config, on_invalid)
    no_shape_cache()
    dev = pick_device(device)
    if dev.type == "cpu":
        configure_threads(threads)
        if precision == "bf16" and not native_cpu_bf16():
            log.warning("--precision bf16: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 is "
                        "emulated and slower than fp32; use --precision fp32 here")
    members = load_members(task, run_dir, dev)
    jobs = jobs if task.parallel_predict else 1
    stats: dict[str, Any] = {"rows_in": 0, "rows_out": 0, "status": Counter()}
    with OutputSet(output_path, reader.input_files(input_path)) as out, \
            Progress(reader.count(input_path) if progress else None, "predict", "item", enabled=progress) as bar:
        for batch, pred in _predictions(task, members, reader, input_path, chunk_size, out, jobs, run_dir, dev,
                                        precision):
            _collect(pred, batch, out, on_invalid, input_path, stats,
                     list(getattr(reader, "locate", ()) or getattr(reader, "required", [])))
            bar.update(len(batch.ids))
        with autocast(precision, dev.type):
            stats.update(task.finish(members, out))
        if stats["rows_in"] == 0:
            raise UserError(f"{input_path}: nothing to predict (no rows or items)")
        stats["status"] = dict(stats["status"])
        out.commit({"domain": domain.name, "task": task.name, "model": str(run_dir), "input": str(input_path),
                    "input_sha256": input_hash(input_path, reader.input_files(input_path)),
                    "prediction_settings": used_prediction_settings(task, run_dir, config),
                    "command_config": config.to_given() if config is not None else {},
                    "members": len(members), "device": str(dev), "threads": threads, "jobs": jobs,
                    "chunk_size": chunk_size, "on_invalid": on_invalid, "precision": precision,
                    "training": first_meta(run_dir).get("resolved"),
                    "versions": versions(domain.requirements), **stats})
    return stats


def _collect(pred: Prediction, batch: Batch, out: OutputSet, on_invalid: str, input_path: Path,
             stats: dict[str, Any], shown: list[str]) -> None:
    stats["rows_in"] += len(batch.ids)
    for name, content in pred.files.items():
        out.write(name, content)
    if pred.table is None:   # an array or image output keeps every item (skip = mark); error stops at the first
        statuses = [str(s) for s in (pred.status or [])]
        stats["status"].update(statuses)
        ok = pred.predicted_mask() if pred.predicted is not None else None
        if on_invalid == "error" and ok is not None and not ok.all():
            i = int((~ok).argmax())
            at = pred.locations[i] if pred.locations else f"item {i + 1}"
            status = statuses[i] if statuses else "not predicted"
            raise UserError(f"{input_path}: {at}: {status}; fix or remove it, or use --on-invalid mark "
                            "(this output format keeps every item, with its status)")
        return
    table, ok = pred.table, pred.predicted_mask()
    if on_invalid == "error" and not ok.all():
        i = int((~ok).argmax())
        where = batch.ids[i] if len(batch.ids) == len(table) else \
            (f"{batch.ids[0]}: output row {i + 1}" if len(batch.ids) == 1 else f"row {batch.first + i + 1}")
        values = ", ".join(f"{c}={_plain(table[c].iloc[i])}" for c in shown if c in table)
        where += f" ({values})" if values else ""
        status = table["status"].iloc[i] if "status" in table else "not predicted"
        detail = str(table["message"].iloc[i]) if "message" in table else ""   # the task's explanation, if any
        status += f" ({detail})" if detail and detail != "nan" else ""
        raise UserError(f"{input_path}: {where}: {status}; fix or remove it, or use --on-invalid mark|skip")
    if "status" in table:   # every row's status, skipped ones included: the summary says why rows are missing
        stats["status"].update(table["status"].astype(str))
    if on_invalid == "skip":
        stats["skipped"] = stats.get("skipped", 0) + int((~ok).sum())
        table = table[ok]
    stats["rows_out"] += len(table)
    out.append(table)


def _plain(value: Any) -> str:
    """A cell as a user wrote it: `0`, not `np.int64(0)`; strings quoted so blanks show."""
    return repr(value) if isinstance(value, str) else str(value.item() if hasattr(value, "item") else value)


def native_cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere oneDNN emulates it."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def autocast(precision: str, device_type: str) -> AbstractContextManager:
    """The models' precision for one prediction call: bf16 autocast, or nothing (fp32 as trained)."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return nullcontext()


def _predictions(task: Task, members, reader: Reader, input_path: Path, size: int, out: OutputSet, jobs: int,
                 run_dir: Path, device, precision: str) -> Iterator[tuple[Batch, Prediction]]:
    batches = reader.batches(input_path, size)
    if jobs <= 1:
        for batch in batches:
            with autocast(precision, device.type):
                pred = task.predict(members, batch, out)
            yield batch, pred
        return
    # Worker processes each load the ensemble once; batches go out in order and come back in order, with at
    # most 2 per worker in flight (memory stays bounded however long the input).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(task.domain.name, task.name, str(run_dir), str(device), precision,
                                       task.prediction_config, task.on_invalid)) as pool:
        pending = []
        try:
            for batch in batches:
                pending.append((batch, pool.submit(_worker_predict, batch)))
                if len(pending) >= 2 * jobs:
                    done_batch, future = pending.pop(0)
                    yield done_batch, future.result()
            for done_batch, future in pending:
                yield done_batch, future.result()
        except BaseException:  # an error, Ctrl-C or SIGTERM (also one raised while the caller held a batch)
            _stop_workers(pool)
            raise


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the workers now. Why: leaving the pool's block otherwise waits for every batch in flight (minutes
    at 10,000-row chunks) whose results would be thrown away."""
    workers = list((pool._processes or {}).values())  # no public way before Python 3.14's terminate_workers;
    pool.shutdown(wait=False, cancel_futures=True)      # read first: shutdown forgets them
    for proc in workers:
        proc.terminate()


def no_shape_cache() -> None:
    """Turn off oneDNN's kernel cache for this process (unless the user set its size).

    Why: oneDNN, behind torch's CPU GELU and convolutions, compiles one kernel per input shape and caches up
    to 1,024 of them. Training sees few shapes. Prediction over variable-length items sees a new shape almost
    every batch, so the cache and the heap around it keep growing: molecules, `predict -j 2`, peak 1,292 MiB
    at 100k rows and 1,726 MiB at 1M. Without the cache the output is identical and a 20k-molecule predict
    took 3.8 % longer. oneDNN reads the setting at its first kernel, so call this before any model runs.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")


_WORKER: dict[str, Any] = {}


def _worker_init(domain_name: str, task_name: str, run_dir: str, device: str, precision: str,
                 config: Config | None, on_invalid: str) -> None:
    no_shape_cache()
    reuse_freed_memory()
    from core.domain import get_domain
    torch.set_num_threads(1)
    task = get_domain(domain_name).task(task_name)
    task.prediction_config, task.on_invalid = config, on_invalid   # as the main process's task has them
    _WORKER.update(task=task, members=load_members(task, Path(run_dir), torch.device(device)),
                   precision=precision, device_type=torch.device(device).type)


def _worker_predict(batch: Batch) -> Prediction:
    with autocast(_WORKER["precision"], _WORKER["device_type"]):
        return _WORKER["task"].predict(_WORKER["members"], batch, None)


def input_hash(path: Path, named: list[Path] | tuple[Path, ...] = ()) -> str:
    """SHA-256 of an input file; for a folder, of its files' relative names and hashes (sorted). `named`: the
    other files the input names (a manifest's clouds, recordings, settings files), so an edited file a
    manifest points at changes the hash too."""
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path)}\0{file_sha256(f)}\n".encode())
        return h.hexdigest()
    others = sorted({Path(p).resolve() for p in named if Path(p).is_file()} - {path.resolve()})
    if not others:
        return file_sha256(path)
    h = hashlib.sha256(file_sha256(path).encode())
    for f in others:
        h.update(f"\n{f}\0{file_sha256(f)}".encode())
    return h.hexdigest()


def used_prediction_settings(task: Task, run_dir: Path, config: Config | None) -> dict[str, Any]:
    """The values of the task's prediction settings this run used: the command's where it gave them, else the
    trained model's (recorded in .meta.json beside the outputs they shaped)."""
    from core.config import deep_merge
    model = (first_meta(run_dir).get("resolved") or {}).get("config") or {}
    given = config.to_given() if config is not None else {}
    out = {}
    for key in task.prediction_settings:
        stored, set_now = value_at(model, key), value_at(given, key)
        both = isinstance(stored, dict) and isinstance(set_now, dict)
        out[key] = deep_merge(stored, set_now) if both else (set_now if set_now is not None else stored)
    return out
