"""Timeseries benchmark: sciformer vs baselines (and neuralforecast's iTransformer, when asked) on the same
windows, plus variable-length classification vs summary statistics + logistic regression.

Forecasting: ETTh1 (the literature protocol: rows 0-8640/8640-11520/11520-14400, train-only z-score,
lookback 96, horizon 96, every one of the 2785 test windows) and the embedded default vic_elec (0.7/0.1/0.2).
Classification: JapaneseVowels (variable length), BasicMotions, ItalyPowerDemand from aeon's wheel.
Prints a table and writes the rows to results/timeseries/benchmark.json (with --commit also
benchmarks/results/timeseries-<machine>.json). Training times are wall seconds on 1 torch thread.

    python benchmarks/timeseries.py --etth1 ../shared/data/timeseries/ETTh1.csv --neuralforecast
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from core.io import write_json  # noqa: E402
from core.metrics import machine_label  # noqa: E402

OUT = ROOT / "results" / "timeseries" / "bench"
DEFAULT_ETTH1 = ROOT.parent / "shared" / "data" / "timeseries" / "ETTh1.csv"
WHERE_ETTH1 = ("ETTh1.csv not found: download ETT-small/ETTh1.csv from https://github.com/zhouhaoyi/ETDataset "
               "(CC BY-ND 4.0) and pass --etth1 PATH")


def sciformer(*args: str) -> float:
    cmd = [sys.executable, "-m", "core.cli", "-q", *args]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def run(name: str, sets: list[str]) -> list[dict]:
    """prepare -> train -> evaluate; adds the model's training seconds (from its checkpoint) as a row."""
    work = OUT / name
    common = ["-d", "timeseries", *[a for s in sets for a in ("--set", s)]]
    sciformer("prepare", *common, "-o", str(work / "prepared"))
    sciformer("train", *common, "-i", str(work / "prepared"), "-o", str(work / "model"))
    sciformer("evaluate", *common, "-i", str(work / "prepared"), "--model", str(work / "model"),
              "-o", str(work / "metrics.json"))
    rows = json.loads((work / "metrics.json").read_text())["rows"]
    seconds = sum(json.loads(m.read_text())["train_seconds"] for m in (work / "model").glob("member_*/meta.json"))
    ours = next(r for r in rows if r["method"].startswith("sciformer"))
    rows.append({**ours, "metric": "train_seconds", "value": round(seconds, 1)})
    print(f"  {name}: done ({seconds:.0f} s training)", flush=True)
    return rows


def neuralforecast_rows(etth1: Path, template: dict) -> list[dict]:
    from benchmarks.timeseries_peers import run_itransformer
    res = run_itransformer(etth1)
    method = f"neuralforecast-itransformer-{res['version'].split()[-1]}"
    return [{**template, "method": method, "metric": k, "value": float(res[k])}
            for k in ("mse", "mae", "train_seconds")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etth1", type=Path, default=DEFAULT_ETTH1, help="path to ETTh1.csv")
    parser.add_argument("--neuralforecast", action="store_true", help="also neuralforecast's iTransformer (own venv)")
    parser.add_argument("--archs", nargs="+", default=["itransformer", "gateformer"])
    parser.add_argument("--skip-classify", action="store_true")
    parser.add_argument("--commit", action="store_true", help="also write benchmarks/results/timeseries-<machine>.json")
    args = parser.parse_args()
    rows: list[dict] = []
    if args.etth1.exists():
        for arch in args.archs:
            rows += run(f"etth1-{arch}", ["data.dataset=etth1", f"data.path={args.etth1.resolve()}",
                                          f"model.arch={arch}"])
        if args.neuralforecast:
            template = next(r for r in rows if r["dataset"] == "ETTh1" and r["metric"] == "mse")
            peer = neuralforecast_rows(args.etth1, template)
            rows += peer
            nf_seconds = next(r["value"] for r in peer if r["metric"] == "train_seconds")
            for r in [r for r in rows if r["dataset"] == "ETTh1" and r["metric"] == "train_seconds"
                      and r["method"].startswith("sciformer")]:
                rows.append({**r, "metric": "train_time_ratio_vs_neuralforecast", "value": r["value"] / nf_seconds})
    else:
        print(WHERE_ETTH1)
    for arch in args.archs:
        rows += run(f"vic_elec-{arch}", [f"model.arch={arch}"])
    if not args.skip_classify:
        for dataset in ("japanesevowels", "basicmotions", "italypowerdemand"):
            rows += run(f"classify-{dataset}", ["task=classify", f"data.dataset={dataset}", ])
    machine = machine_label()
    for r in rows:
        r["machine"] = machine
    write_json(ROOT / "results" / "timeseries" / "benchmark.json", rows)
    if args.commit:
        write_json(ROOT / f"benchmarks/results/timeseries-{machine}.json", rows)
    from core.commands import format_table
    print(format_table(rows))


if __name__ == "__main__":
    main()
