"""neuralforecast peer for the time-series benchmark, in its own virtual environment (torch + lightning + ray are
far too heavy for the main one). Created on first use under benchmarks/.peers/neuralforecast; the model itself runs
in benchmarks/peers_nf_run.py inside that venv, and its metrics come back as JSON."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NF_VENV = ROOT / "benchmarks" / ".peers" / "neuralforecast"
NF_VERSION = "3.3.0"
ETTH1_BORDERS = ((0, 8640), (8640, 11520), (11520, 14400))  # train / val / test rows (Informer, iTransformer)


def ensure_neuralforecast() -> Path:
    """The peer venv's bin directory, created on first use (~1.7 GB, ~1.5 min from the local wheels/PyPI)."""
    bin_dir, marker = NF_VENV / "bin", NF_VENV / f"installed-{NF_VERSION}"  # marker: an interrupted install redoes
    if not marker.exists():
        subprocess.run(["python3.11", "-m", "venv", str(NF_VENV)], check=True)
        # torch first, pinned: the local CPU wheel here (an unpinned one pulls the multi-GB CUDA build)
        subprocess.run([str(bin_dir / "pip"), "install", "-q", "torch==2.13.0"], check=True)
        # ray[train,tune] (~400 MB with pyarrow) is unused here but cannot be left out: neuralforecast/core.py
        # imports it at module level (through common/_base_auto.py), so `import neuralforecast` fails without it
        subprocess.run([str(bin_dir / "pip"), "install", "-q", f"neuralforecast=={NF_VERSION}"], check=True)
        subprocess.run([str(bin_dir / "python"), "-c", "from neuralforecast.models import iTransformer"], check=True)
        marker.touch()
    return bin_dir


def run_itransformer(csv_path: str | Path, borders=ETTH1_BORDERS, lookback: int = 96, horizon: int = 96, *,
                     d_model: int = 256, n_heads: int = 8, e_layers: int = 2, d_ff: int = 256,
                     dropout: float = 0.1, lr: float = 1e-4, num_lr_decays: int = 10, batch_size: int = 32,
                     max_steps: int = 2640, val_check_steps: int = 264, patience: int = 3,
                     seed: int = 1) -> dict:
    """neuralforecast's iTransformer, multivariate, on the long-horizon protocol: z-score fit on the train rows,
    stride-1 windows, early stopping on val (best weights kept), every test window (targets in the test rows,
    lookback reaching into val). MSE/MAE are on the train-standardized scale.

    Defaults are TSLib's iTransformer ETTh1 script: max_steps 2640 = 10 epochs of the 8449 train windows at batch
    32, validated once per epoch with patience 3; lr 1e-4 halved every epoch (num_lr_decays=10 over max_steps =
    TSLib's lradj type1). neuralforecast's own default, lr 1e-3 constant (num_lr_decays=-1), stops early and
    scores worse here (MSE .401 vs .387)."""
    settings = {"csv": str(Path(csv_path).resolve()), "borders": [list(b) for b in borders], "lookback": lookback,
                "horizon": horizon, "d_model": d_model, "n_heads": n_heads, "e_layers": e_layers, "d_ff": d_ff,
                "dropout": dropout, "lr": lr, "num_lr_decays": num_lr_decays, "batch_size": batch_size,
                "max_steps": max_steps, "val_check_steps": val_check_steps, "patience": patience, "seed": seed}
    # one thread, so the timing compares with sciformer's single-thread numbers
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        done = subprocess.run([str(ensure_neuralforecast() / "python"), str(ROOT / "benchmarks" / "peers_nf_run.py"),
                               json.dumps(settings), str(out)], capture_output=True, text=True, env=env)
        if done.returncode:
            raise RuntimeError(f"neuralforecast iTransformer failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="neuralforecast iTransformer on ETTh1 (peer venv); prints JSON")
    parser.add_argument("--etth1", required=True, help="path to ETTh1.csv")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(run_itransformer(args.etth1, seed=args.seed), indent=2))


__all__ = ["ensure_neuralforecast", "run_itransformer"]
