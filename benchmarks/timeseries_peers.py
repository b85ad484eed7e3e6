"""neuralforecast peer for the time-series benchmark, in its own virtual environment (torch + lightning + ray are
far too heavy for the main one). Created on first use under benchmarks/.peers/neuralforecast; the model itself runs
in benchmarks/peers_nf_run.py inside that venv, and its metrics come back as JSON."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NF_VENV = ROOT / "benchmarks" / ".peers" / "neuralforecast"
NF_VERSION = "3.3.0"


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


def run_itransformer(series: str | Path, borders, lookback: int = 96, horizon: int = 96, *,
                     d_model: int = 256, n_heads: int = 8, e_layers: int = 2, d_ff: int = 256,
                     dropout: float = 0.1, lr: float = 1e-4, num_lr_decays: int = 10, batch_size: int = 32,
                     epochs: int = 10, patience: int = 3, seed: int = 1) -> dict:
    """neuralforecast's iTransformer, multivariate, on the long-horizon protocol: `series` is a Parquet file of the
    series standardized with the training rows' statistics (NaN = missing), `borders` the train/val/test rows;
    stride-1 windows, early stopping on val (best weights kept), every test window (targets in the test rows,
    lookback reaching into val). MSE/MAE are on the train-standardized scale, over observed targets.

    Settings are TSLib's iTransformer ETTh1 script, used unchanged for every dataset (TSLib has no script for the
    others): d_model/d_ff 256, 2 layers, lr 1e-4 halved every epoch (num_lr_decays=10 over max_steps = TSLib's
    lradj type1), batch 32, 10 epochs (max_steps = 10 x the training windows / 32), validated once per epoch with
    patience 3. neuralforecast's own default, lr 1e-3 constant (num_lr_decays=-1), stops early and scores worse
    on ETTh1's validation rows too.

    Returns the metrics plus `train_seconds` (the fit loop, from a callback) and `script_seconds` (the whole
    subprocess: interpreter start, imports, data, fit and prediction of every test window), the figure compared
    with the whole `sciformer train` command."""
    (tr0, tr1), _, _ = borders
    steps_per_epoch = -(-(tr1 - tr0 - lookback - horizon + 1) // batch_size)
    settings = {"series": str(Path(series).resolve()), "borders": [list(b) for b in borders], "lookback": lookback,
                "horizon": horizon, "d_model": d_model, "n_heads": n_heads, "e_layers": e_layers, "d_ff": d_ff,
                "dropout": dropout, "lr": lr, "num_lr_decays": num_lr_decays, "batch_size": batch_size,
                "max_steps": epochs * steps_per_epoch, "val_check_steps": steps_per_epoch, "patience": patience,
                "seed": seed}
    # one thread, so the timing compares with sciformer's single-thread numbers
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    python = ensure_neuralforecast() / "python"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        t0 = time.perf_counter()
        done = subprocess.run([str(python), str(ROOT / "benchmarks" / "peers_nf_run.py"), json.dumps(settings),
                               str(out)], capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t0
        if done.returncode:
            raise RuntimeError(f"neuralforecast iTransformer failed:\n{done.stderr[-3000:]}")
        return {**json.loads(out.read_text()), "script_seconds": seconds}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="neuralforecast iTransformer on a prepared sciformer forecast "
                                                 "folder (peer venv); prints JSON")
    parser.add_argument("prepared", type=Path, help="the -o folder of `sciformer prepare -d timeseries`")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from benchmarks.timeseries import standardized_series
    path, borders = standardized_series(args.prepared, args.prepared / "nf_series.parquet")
    print(json.dumps(run_itransformer(path, borders, seed=args.seed), indent=2))


__all__ = ["ensure_neuralforecast", "run_itransformer"]
