"""Peak memory of `sciformer predict` as the input grows: 1x, 10x and 100x a base size, per (domain, task).

The input is the task's own example input, repeated: table rows (streamed in chunks of --chunk-size rows) or the
files of a folder; or, with --input, the first rows of a larger table of distinct items (repeated only beyond its
length), so that no cache of repeated items flatters the measurement. The growth must be flat beyond the chunk
size: memory is bounded by the batch, not the input.
Each prediction is a separate process (the whole command, as a user runs it); its peak resident set size comes
from the kernel (getrusage of the finished child). Rows: task `predict-memory`, dataset `<domain>-<task>`, split
`<n>-items`, metric `peak_rss_mb` (and `items_per_s`).

    python -m benchmarks.memory --run molecules=results/molecules/properties/model --base 2000
    python -m benchmarks.memory --run molecules=RUN --base 200 --input moses-test.csv   # distinct molecules
    python -m benchmarks.memory --run molecules=results/molecules/properties/model --base 1000 \
        --input moses-test.csv --chunk-size 10000 --tag default-model       # the workflow's default model
    python -m benchmarks.memory --run tiny=RUN --base 1000            # with SCIFORMER_DOMAIN_PATH=tests/example_domains
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import ONE_THREAD, print_table, write_rows
from core.domain import get_domain
from core.runs import run_info


def scaled_input(good: Path, n: int, folder: Path) -> Path:
    """The example input repeated to n items (rows of a table, files of a folder)."""
    if good.is_dir():
        files = sorted(p for p in good.iterdir() if p.is_file())
        out = folder / f"input_{n}"
        out.mkdir()
        for i in range(n):
            src = files[i % len(files)]
            shutil.copy(src, out / f"{i:07d}{src.suffix}")
        return out
    frame = pd.read_csv(good, dtype=str, keep_default_na=False)
    out = folder / f"input_{n}{good.suffix}"
    pd.concat([frame] * (n // len(frame) + 1), ignore_index=True).iloc[:n].to_csv(out, index=False)
    return out


# A fresh wrapper process per measurement: RUSAGE_CHILDREN's ru_maxrss is the largest child a process ever
# had, so each command gets a parent of its own that reports exactly that command's peak.
_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r)")


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one command run to completion."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True,
                          env={**os.environ, **ONE_THREAD})
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return int(done.stdout.strip().splitlines()[-1]) / 1024.0, seconds


def measure(domain: str, run: Path, base: int, factors: list[int], chunk: int,
            source: Path | None = None, tag: str = "") -> list[dict]:
    task = get_domain(domain).task(run_info(run).get("task"))
    dataset = f"{domain}-{task.name}" + (f"-{tag}" if tag else "")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        good = source or task.example_inputs(tmp)[0]
        for factor in sorted(factors):
            n = base * factor
            scaled = scaled_input(good, n, tmp)
            out = tmp / f"out_{n}" / task.default_output
            mb, seconds = peak_rss_mb([sys.executable, "-m", "core.cli", "-q", "predict", "-d", domain, "-i",
                                       str(scaled), "-o", str(out), "--model", str(run), "--chunk-size", str(chunk)])
            extra = {"chunk_size": chunk, "input": source.name if source else "example input, repeated"}
            rows += [{"task": "predict-memory", "dataset": dataset, "split": f"{n}-items",
                      "method": "sciformer", "metric": "peak_rss_mb", "value": mb, **extra},
                     {"task": "predict-memory", "dataset": dataset, "split": f"{n}-items",
                      "method": "sciformer", "metric": "items_per_s", "value": n / seconds, **extra}]
            print(f"{domain}/{task.name}: {n} items, peak {mb:.0f} MB, {n / seconds:.0f} items/s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="DOMAIN=RUN_DIR",
                        help="a domain and its trained run (repeatable)")
    parser.add_argument("--base", type=int, default=2000, help="items at 1x")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--chunk-size", type=int, default=1000, help="rows per batch (predict --chunk-size)")
    parser.add_argument("--input", type=Path, help="a table of distinct items to take the rows from (tables only; "
                                                   "default: the task's example input, repeated)")
    parser.add_argument("--tag", default="", help="appended to the rows' dataset (<domain>-<task>-<tag>), so that "
                                                 "rows of another model (e.g. default-model) do not replace these")
    parser.add_argument("--commit", action="store_true", help="also write benchmarks/results/memory-<machine>.json")
    args = parser.parse_args(argv)
    rows = []
    for item in args.run:
        domain, _, run = item.partition("=")
        rows += measure(domain, Path(run), args.base, args.factors, args.chunk_size, args.input, args.tag)
    print_table(rows, ("peak_rss_mb",))
    write_rows("memory", rows, args.commit)
    return rows


if __name__ == "__main__":
    main()
