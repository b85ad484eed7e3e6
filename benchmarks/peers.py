"""Peer models for the molecules benchmark, each in its own virtual environment (chemprop 2.3.1 pins rdkit
exactly, so it cannot share the main environment). Created on first use under benchmarks/.peers/."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.io import atomic_path  # noqa: E402
from core.metrics import REGRESSION_METRICS  # noqa: E402

CHEMPROP_VENV = ROOT / "benchmarks" / ".peers" / "chemprop"
TARGETS = {"freesolv": "expt", "solubility": "solubility"}


def ensure_chemprop() -> Path:
    bin_dir = CHEMPROP_VENV / "bin"
    if not (bin_dir / "chemprop").exists():
        subprocess.run([sys.executable, "-m", "venv", str(CHEMPROP_VENV)], check=True)
        # torch first, pinned: the local CPU wheel here (an unpinned one pulls the multi-GB CUDA build)
        subprocess.run([str(bin_dir / "pip"), "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(bin_dir / "pip"), "install", "-q", "chemprop==2.3.1"], check=True)
    return bin_dir


def _chemprop(*args: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run([str(ensure_chemprop() / "chemprop"), *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"chemprop {args[0]} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def run_chemprop(work: Path, dataset: str, split: str) -> list[dict]:
    """chemprop's default D-MPNN on the exact split sciformer used (the prepared `split` column)."""
    target = TARGETS[dataset]
    data = pd.read_csv(work / "prepared" / "molecules.csv")
    out = work / "chemprop"
    shutil.rmtree(out, ignore_errors=True)  # never pick up a model of an earlier run
    _chemprop("train", "-i", str(work / "prepared" / "molecules.csv"), "-s", "smiles", "--target-columns", target,
              "--splits-column", "split", "--task-type", "regression", "-o", str(out), "--num-workers", "0",
              "--accelerator", "cpu", "--devices", "1")
    test = data[data.split == "test"]
    with atomic_path(work / "chemprop_test.csv") as tmp:
        test[["smiles"]].to_csv(tmp, index=False)
    model = next(out.rglob("best*.pt"))
    _chemprop("predict", "-i", str(work / "chemprop_test.csv"), "-s", "smiles", "--model-paths", str(model),
              "-o", str(work / "chemprop_preds.csv"), "--num-workers", "0", "--accelerator", "cpu", "--devices", "1")
    pred = pd.read_csv(work / "chemprop_preds.csv")[target].to_numpy(float)
    y = test[target].to_numpy(float)
    return [{"task": f"regression-{target}", "dataset": dataset, "split": split, "method": "chemprop-2.3.1",
             "metric": metric, "value": fn(y, pred)} for metric, fn in REGRESSION_METRICS.items()]


def chemprop_throughput(work: Path, smiles_csv: Path) -> dict:
    """`chemprop predict` molecules/s on the same input sciformer's throughput was measured on."""
    model = next((work / "chemprop").rglob("best*.pt"))
    n = len(pd.read_csv(smiles_csv))
    seconds = _chemprop("predict", "-i", str(smiles_csv), "-s", "smiles", "--model-paths", str(model),
                        "-o", str(work / "chemprop_throughput.csv"), "--num-workers", "0", "--accelerator", "cpu",
                        "--devices", "1")
    return {"task": "predict-throughput", "dataset": "moses-test", "split": f"{n}-molecules",
            "method": "chemprop-2.3.1", "metric": "molecules_per_s", "value": n / seconds}


__all__ = ["run_chemprop", "chemprop_throughput", "ensure_chemprop"]
