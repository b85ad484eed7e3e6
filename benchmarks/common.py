"""What every benchmark script shares: running the `sciformer` CLI as a whole command (timed), the row
convention, and writing rows to results/<domain>/benchmark.json (and, with --commit, to the committed
benchmarks/results/<domain>-<machine>.json, replacing only the datasets that were re-run).

Scripts run as modules from the project root (`python -m benchmarks.<domain>`): the project is installed
editable, so `core` and `domains` import without path tricks.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from core.io import write_json
from core.metrics import machine_label

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = ("task", "dataset", "split", "method", "metric", "value", "machine")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_cli(*args: str, threads: int = 1, env: dict | None = None) -> float:
    """Run `sciformer ARGS` as a separate process (the whole command, as a user would); return its seconds.
    Fails with the command's stderr tail."""
    cmd = [sys.executable, "-m", "core.cli", "-q", *args]
    full_env = {**os.environ, **ONE_THREAD, **(env or {})}
    if threads != 1:
        full_env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=full_env)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return seconds


def sets(items: list[str]) -> list[str]:
    """['a=1', 'b=2'] -> ['--set', 'a=1', '--set', 'b=2']"""
    return [arg for item in items for arg in ("--set", item)]


def normalized(rows: list[dict]) -> list[dict]:
    """Rows in the documented key order, every one stamped with this machine; extra keys (threads...) kept."""
    machine = machine_label()
    return [{**{k: r[k] for k in ROW_KEYS if k in r}, "machine": r.get("machine") or machine,
             **{k: v for k, v in r.items() if k not in ROW_KEYS}} for r in rows]


def write_rows(domain: str, rows: list[dict], commit: bool) -> Path:
    """results/<domain>/benchmark.json always; with `commit` also the committed file of this machine, where
    rows of (task, dataset) pairs not re-run this time are kept (`--tasks enhance` keeps the classify rows)."""
    rows = normalized(rows)
    write_json(ROOT / f"results/{domain}/benchmark.json", rows)
    if not commit:
        return ROOT / f"results/{domain}/benchmark.json"
    committed = ROOT / f"benchmarks/results/{domain}-{machine_label()}.json"
    rerun = {(r["task"], r["dataset"]) for r in rows}
    kept = ([r for r in json.loads(committed.read_text()) if (r["task"], r["dataset"]) not in rerun]
            if committed.exists() else [])
    write_json(committed, kept + rows)
    return committed


def print_table(rows: list[dict], metrics: tuple[str, ...] | None = None) -> None:
    frame = pd.DataFrame(rows)
    if metrics:
        frame = frame[frame.metric.isin(metrics)]
    if frame.empty:
        return
    pivot = frame.pivot_table(index="method", columns=["dataset", "split", "metric"], values="value", aggfunc="first")
    print(pivot.to_string(float_format=lambda v: f"{v:.4g}"), flush=True)
