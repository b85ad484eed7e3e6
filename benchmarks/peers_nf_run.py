"""Runs inside the neuralforecast peer venv (benchmarks/.peers/neuralforecast), called by timeseries_peers.py.

Usage: python peers_nf_run.py '<json settings>' OUT.json. Writes {"mse", "mae", "train_seconds", "windows", ...}
to OUT.json (a file, not stdout: Lightning prints to stdout).

Input (settings["series"]): a Parquet file of the series already standardized with the training rows' mean and
spread (sciformer's prepared series, the same scaling as every other method), NaN where a value is missing.
Missing values are given to neuralforecast as `available_mask` 0 (its loss skips them) with the channel's last
earlier value as the input, and every error is computed on observed targets only, as sciformer's are."""
import copy
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import neuralforecast  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from neuralforecast import NeuralForecast  # noqa: E402
from neuralforecast.losses.pytorch import MSE  # noqa: E402
from neuralforecast.models import iTransformer  # noqa: E402


class TimeAndKeepBest(pl.Callback):
    """Times the fit (training + its periodic validation) and restores the weights with the best val loss at the
    end: neuralforecast's early stopping keeps the last weights, the literature (TSLib) reloads the best."""

    def __init__(self):
        self.best, self.state, self.seconds, self.t0, self.steps = float("inf"), None, 0.0, 0.0, 0

    def on_fit_start(self, trainer, module):
        self.t0 = time.perf_counter()

    def on_validation_end(self, trainer, module):
        loss = trainer.callback_metrics.get("ptl/val_loss")
        if not trainer.sanity_checking and loss is not None and float(loss) < self.best:
            self.best, self.state = float(loss), copy.deepcopy(module.state_dict())

    def on_fit_end(self, trainer, module):
        self.seconds, self.steps = time.perf_counter() - self.t0, trainer.global_step
        if self.state is not None:
            module.load_state_dict(self.state)


def main(s: dict, out: str) -> None:
    torch.set_num_threads(1)
    (tr0, tr1), (va0, va1), (te0, te1) = s["borders"]
    assert tr0 == 0 and tr1 == va0 and va1 == te0, "contiguous train/val/test segments expected"
    # already z-scored with TRAIN statistics only (ddof=0, as sklearn's StandardScaler in TSLib); every metric below
    # is on this globally standardized scale. No neuralforecast scaler (scaler_type='identity', no local scaler).
    z = pd.read_parquet(s["series"]).iloc[:te1].reset_index(drop=True)
    observed = z.notna()
    gaps = bool((~observed).to_numpy().any())
    filled = z.ffill().fillna(0.0)
    long = filled.assign(ds=np.arange(len(z))).melt(id_vars="ds", var_name="unique_id", value_name="y")
    long["available_mask"] = observed.assign(ds=np.arange(len(z))).melt(id_vars="ds", value_name="m")["m"]
    long["available_mask"] = long["available_mask"].astype(float)
    L, H = s["lookback"], s["horizon"]
    model = iTransformer(
        h=H, input_size=L, n_series=z.shape[1], hidden_size=s["d_model"], n_heads=s["n_heads"],
        e_layers=s["e_layers"], d_ff=s["d_ff"], dropout=s["dropout"], use_norm=True, loss=MSE(), valid_loss=MSE(),
        learning_rate=s["lr"], num_lr_decays=s["num_lr_decays"], max_steps=s["max_steps"],
        val_check_steps=s["val_check_steps"], early_stop_patience_steps=s["patience"],
        # multivariate model: batch_size counts series (all 7 in every batch); windows_batch_size is the batch
        windows_batch_size=s["batch_size"], inference_windows_batch_size=1024, step_size=1,
        # [0, 1]: train only on windows with all H targets inside the train rows (neuralforecast would otherwise
        # also use the last H-1 windows with zero-padded, masked targets), i.e. exactly TSLib's 8449 windows. With
        # gaps that would drop most windows, so there neuralforecast's default (0: any window with an observed
        # target; the loss masks the rest) is used
        training_data_availability_threshold=0.0 if gaps else [0.0, 1.0],
        random_seed=s["seed"], scaler_type="identity", accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[TimeAndKeepBest()])
    nf = NeuralForecast(models=[model], freq=1)
    # val_size/test_size carve the tail of rows [0, te1): train windows end by tr1; val windows have targets in
    # [va0, va1) with lookback reaching into train; test windows (stride 1) have targets in [te0, te1) with lookback
    # starting at te0 - L (inside val), the TSLib convention. refit=False: one fit, then every test window.
    cv = nf.cross_validation(long, val_size=va1 - va0, test_size=te1 - te0, n_windows=None, step_size=1,
                             refit=False)
    # NeuralForecast deep-copies the models, so read the callback back from its own copy
    cb = next(c for c in nf.models[0].trainer_kwargs["callbacks"] if isinstance(c, TimeAndKeepBest))
    truth = long.set_index(["unique_id", "ds"])
    keys = pd.MultiIndex.from_arrays([cv["unique_id"], cv["ds"]])
    ok = truth["available_mask"].reindex(keys).to_numpy() > 0
    err = (cv["iTransformer"].to_numpy() - truth["y"].reindex(keys).to_numpy())[ok]
    windows = cv["cutoff"].nunique()
    assert len(cv) == windows * H * z.shape[1] and windows == te1 - te0 - H + 1, (len(cv), windows)
    assert cv["cutoff"].min() == te0 - 1 and cv["ds"].max() == te1 - 1
    result = {"mse": float(np.mean(err ** 2)), "mae": float(np.mean(np.abs(err))), "train_seconds": cb.seconds,
              "windows": int(windows), "best_val_mse": cb.best,
              "version": f"neuralforecast {neuralforecast.__version__}",
              "settings": {**s, "steps_run": cb.steps, "loss": "MSE", "torch": torch.__version__,
                           "threads": torch.get_num_threads()}}
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), sys.argv[2])
