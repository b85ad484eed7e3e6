"""chemprop, the molecules benchmark's peer, in its own virtual environment (chemprop 2.3.1 pins rdkit exactly, so
it cannot share the main one). Created on first use under benchmarks/.peers/chemprop.

Variants (all on the exact split sciformer used: chemprop reads the prepared `split` column):
- `chemprop-2.3.1`: the default D-MPNN, one model;
- `chemprop-2.3.1-ens3`: `--ensemble-size 3`, as many members as sciformer's default;
- `chemprop-2.3.1-ens3-rdkit2d`: 3 members plus its RDKit 2D descriptor molecule featurizer
  (`--molecule-featurizers rdkit_2d`, scaled by chemprop's default descriptor scaling), the closest match to
  sciformer's default (3 members + RDKit 2D descriptors).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from core.io import atomic_path
from core.metrics import REGRESSION_METRICS

ROOT = Path(__file__).resolve().parents[1]
CHEMPROP_VERSION = "2.3.1"
CHEMPROP_VENV = ROOT / "benchmarks" / ".peers" / "chemprop"
VARIANTS = {
    f"chemprop-{CHEMPROP_VERSION}": [],
    f"chemprop-{CHEMPROP_VERSION}-ens3": ["--ensemble-size", "3"],
    f"chemprop-{CHEMPROP_VERSION}-ens3-rdkit2d": ["--ensemble-size", "3", "--molecule-featurizers", "rdkit_2d"],
}
_CPU = ["--num-workers", "0", "--accelerator", "cpu", "--devices", "1"]


def ensure_chemprop() -> Path:
    """The peer venv's bin directory, created on first use (a marker file: an interrupted install redoes)."""
    bin_dir, marker = CHEMPROP_VENV / "bin", CHEMPROP_VENV / f"installed-{CHEMPROP_VERSION}"
    if not marker.exists() and not (bin_dir / "chemprop").exists():
        subprocess.run([sys.executable, "-m", "venv", str(CHEMPROP_VENV)], check=True)
        # torch first, pinned: the local CPU wheel here (an unpinned one pulls the multi-GB CUDA build)
        subprocess.run([str(bin_dir / "pip"), "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(bin_dir / "pip"), "install", "-q", f"chemprop=={CHEMPROP_VERSION}"], check=True)
    marker.touch()
    return bin_dir


def chemprop(*args: str, threads: int = 1) -> float:
    """Run the chemprop CLI (whole command); return its seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run([str(ensure_chemprop() / "chemprop"), *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"chemprop {args[0]} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def featurizer_args(variant: str) -> list[str]:
    extra = VARIANTS[variant]
    return extra[extra.index("--molecule-featurizers"):] if "--molecule-featurizers" in extra else []


def model_paths(work: Path, variant: str) -> list[str]:
    paths = sorted(str(p) for p in (work / variant).rglob("best*.pt"))
    if not paths:
        raise RuntimeError(f"no trained chemprop model under {work / variant}")
    return paths


def run_chemprop(work: Path, dataset: str, target: str, split: str, variant: str,
                 epochs: int | None = None) -> list[dict]:
    """Train `variant` on work/prepared/molecules.csv (its `split` column) and score the test rows."""
    prepared = work / "prepared" / "molecules.csv"
    data = pd.read_csv(prepared)
    out = work / variant
    shutil.rmtree(out, ignore_errors=True)  # never pick up a model of an earlier run
    chemprop("train", "-i", str(prepared), "-s", "smiles", "--target-columns", target, "--splits-column", "split",
             "--task-type", "regression", "-o", str(out), *VARIANTS[variant], *_CPU,
             *(["--epochs", str(epochs)] if epochs else []))
    test = data[data.split == "test"]
    src, preds = work / f"{variant}_test.csv", work / f"{variant}_preds.csv"
    with atomic_path(src) as tmp:
        test[["smiles"]].to_csv(tmp, index=False)
    chemprop("predict", "-i", str(src), "-s", "smiles", "--model-paths", *model_paths(work, variant),
             *featurizer_args(variant), "-o", str(preds), *_CPU)
    pred = pd.read_csv(preds)[target].to_numpy(float)
    y = test[target].to_numpy(float)
    return [{"task": f"regression-{target}", "dataset": dataset, "split": split, "method": variant,
             "metric": metric, "value": fn(y, pred)} for metric, fn in REGRESSION_METRICS.items()]


def chemprop_predict_seconds(work: Path, variant: str, smiles_csv: Path, output: Path, threads: int) -> float:
    """`chemprop predict` of a trained variant on a SMILES file, whole command."""
    return chemprop("predict", "-i", str(smiles_csv), "-s", "smiles", "--model-paths", *model_paths(work, variant),
                    *featurizer_args(variant), "-o", str(output), *_CPU, threads=threads)


__all__ = ["VARIANTS", "ensure_chemprop", "run_chemprop", "chemprop_predict_seconds"]
