"""The `forecast` task: multivariate series -> the next horizon with conformal quantiles (iTransformer /
Gateformer-style on the core encoder, starting from the closed form chosen on validation)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from core.config import Config
from core.errors import UserError
from core.task import BadInput, Prediction, Task, TrainingTask
from domains.timeseries import closedform as CF
from domains.timeseries import data as D
from domains.timeseries import forecast as F
from domains.timeseries.forecast_input import ForecastReader, NewSeries, out_of_range, rows_read
from domains.timeseries.models import Forecaster, forecast_loss
from domains.timeseries.sources import FILE_SETS, WHEEL

log = logging.getLogger("sciformer.timeseries")

# how the conformal band of a forecast was scaled (the `band` column), by calibrated scale
BANDS = {"none": "validation_residuals", "lookback_std": "lookback_spread", "lagged_error": "last_forecast_error"}
SHORT_HISTORY_BAND = "median_forecast_error"   # lagged_error without lookback + horizon rows of history


class ForecastTask(Task):
    data_settings = ("task", "data")     # each task prepares its own files
    prediction_settings = ("data.time_column",)   # a new file's time column may have another name
    name = "forecast"
    description = "multivariate series -> next-horizon forecasts with conformal p10/p50/p90 (iTransformer)"
    datasets = (*WHEEL, *FILE_SETS)
    smoke_overrides = ("data.max_rows=900", "forecast.lookback=48", "forecast.horizon=24", "train.epochs=1",
                       "train.max_steps=3", "train.ensemble=2", "train.progress=false", "encoder.d_model=16",
                       "encoder.n_heads=2", "encoder.n_layers=1", "encoder.d_ff=32")

    def prepare(self, cfg: Config, out_dir: Path) -> dict[str, str]:
        return F.prepare(cfg, out_dir)

    def check_data(self, cfg: Config) -> list[str]:
        """Also: the columns your file must have (wide: time, targets, covariates; long: id, time, value,
        covariates) are in its header, read without loading the rows."""
        from core.readers import TableReader, separator_hint
        problems = super().check_data(cfg)
        if problems or cfg["data.dataset"] != "csv" or not cfg["data.path"]:
            return problems
        path = Path(str(cfg["data.path"]))
        try:
            columns = TableReader().header(path)
        except UserError as exc:
            return [str(exc)]
        long = cfg["data.format"] == "long"
        keys = (("data.id_column", "data.ds_column", "data.value_column", "data.covariates") if long
                else ("data.time_column", "data.covariates", "data.targets"))
        wanted = {k: [str(v) for v in (cfg[k] if isinstance(cfg[k], (list, tuple)) else [cfg[k]])] for k in keys}
        missing = {k: [c for c in v if c not in columns] for k, v in wanted.items()}
        found = f"{', '.join(map(str, columns[:20]))}{separator_hint(columns)}"
        return [f"{path}: no column {', '.join(map(repr, cols))} ({key}); found: {found}"
                for key, cols in missing.items() if cols]

    def build_training(self, cfg: Config, prepared: Path, stage: str, init: Path | None, seed: int) -> TrainingTask:
        lookback, horizon = int(cfg["forecast.lookback"]), int(cfg["forecast.horizon"])
        p = F.Prepared(prepared, calendar=list(cfg["data.calendar"]))
        found = CF.search(p, lookback, horizon, cfg["forecast.ridge_alphas"], cfg["forecast.period"],
                          cfg["forecast.linear_norm"], cfg["forecast.linear_exo"])
        lin = found["best"]
        covariates = p.exo[: p.borders[0][1], : len(p.covariates)]   # training rows (the calendar follows)
        meta = {"kind": "forecast", "targets": p.targets, "covariates": p.covariates,
                "calendar": list(cfg["data.calendar"]), "scaler": p.scaler.to_dict(),
                "covariate_scaler": D.Scaler.fit(covariates).to_dict(), "freq": p.info["freq"],
                "time_column": p.info["time_column"], "lookback": lookback, "horizon": horizon,
                "cycle": {"name": lin["spec"].cycle, "keys": lin["keys"]},
                "linear_norm": lin["spec"].norm, "linear_exo": lin["spec"].exo,
                "arch": cfg["model.arch"], "patch": int(cfg["model.patch"]), "encoder": dict(cfg["encoder"]),
                "allow_missing": bool(cfg["data.allow_missing"]), "quantiles": list(cfg["forecast.quantiles"]),
                "dataset": p.info["dataset"], "closed_form": CF.summary(lin),
                "closed_form_candidates": found["table"]}
        model = self.build_model(meta)
        as_tensor = (lambda a: None if a is None else torch.tensor(a, dtype=torch.float32))
        model.init_linear(as_tensor(lin["weight"].T), as_tensor(lin["bias"]), as_tensor(lin["cycle"]),
                          as_tensor(lin["exo"]))
        collate = F.collate_fn(p.inputs(meta), lookback, horizon, meta["allow_missing"])
        return TrainingTask(model, p.starts(0, lookback, horizon).tolist(), p.starts(1, lookback, horizon).tolist(),
                            collate, forecast_loss, meta, val_metric="val_mse")

    def build_model(self, metadata: Mapping[str, Any]) -> Forecaster:
        keys = metadata["cycle"]["keys"]
        return Forecaster(len(metadata["targets"]), len(metadata["covariates"]) + len(metadata["calendar"]),
                          metadata["lookback"], metadata["horizon"], metadata["encoder"], arch=metadata["arch"],
                          patch=metadata["patch"], phases=len(keys) if keys else 0,
                          mask_input=metadata["allow_missing"], linear_norm=metadata["linear_norm"],
                          linear_exo=metadata["linear_exo"])

    def calibrate(self, cfg: Config, prepared: Path, members) -> dict[str, Any]:
        """Split-conformal offsets from the validation windows' residuals, every score scale."""
        return F.calibrate(cfg, prepared, members)

    def evaluate(self, cfg: Config, prepared: Path, members) -> tuple[list[dict], pd.DataFrame]:
        from domains.timeseries.evaluation import evaluate_forecast
        return evaluate_forecast(cfg, prepared, members)

    # -- prediction ---------------------------------------------------------------------------------------
    def reader(self, metadata: Mapping[str, Any]) -> ForecastReader:
        """The new file's time column: the training file's name unless the command gives data.time_column."""
        time_column = self.command_settings("data").get("time_column") or metadata["time_column"]
        return ForecastReader({**metadata, "time_column": time_column})

    def predict(self, members, batch, out) -> Prediction:
        return Prediction(table=forecast_table(members, batch.data))

    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        from domains.timeseries.examples import forecast_examples
        return forecast_examples(Path(folder))

    def bad_inputs(self, folder: Path) -> list[BadInput]:
        from domains.timeseries.examples import forecast_bad_inputs
        return forecast_bad_inputs(Path(folder))

    def report_figures(self, predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
        from domains.timeseries.report import forecast_figure, save
        return save(forecast_figure(predictions, metrics), out_dir)


def forecast_table(members, s: NewSeries) -> pd.DataFrame:
    """Long output: unique_id, ds, y_pred, one column per quantile (the data's own units), band (how the
    conformal band was scaled) and status (`ok`, or `out_of_range` with NaN values)."""
    meta = members[0].metadata["task"]
    h = meta["horizon"]
    quantile_cols = [f"p{round(q * 100):02d}" for q in meta["quantiles"]]
    problem = out_of_range(meta, s)
    if problem is not None:
        log.warning("%s; its forecasts are NaN with status out_of_range", problem)
        y_pred = np.full((h, len(meta["targets"])), np.nan)
        bands, band, status = {c: y_pred for c in quantile_cols}, "", "out_of_range"
    else:
        y_pred, bands, band = _forecast(members, s, meta)
        status = "ok"
    parts = []
    for c, name in enumerate(meta["targets"]):
        part = pd.DataFrame({"unique_id": name, "ds": s.stamps, "y_pred": y_pred[:, c]})
        for col in quantile_cols:
            part[col] = bands[col][:, c]
        parts.append(part.assign(band=band, status=status))
    return pd.concat(parts, ignore_index=True)


def _forecast(members, s: NewSeries, meta: Mapping[str, Any]) -> tuple[np.ndarray, dict, str]:
    """(forecast [H, C], {quantile column: [H, C]}, band) in the data's units, from the last rows_read rows."""
    lb, h = meta["lookback"], meta["horizon"]
    scaler = D.Scaler.from_dict(meta["scaler"])
    table, n = s.history, rows_read(meta, s)
    z = scaler.transform(table.values[-n:])
    times = table.time[-n:].append(s.stamps)
    fut = s.future_covariates
    cov = np.concatenate([table.covariates[-n:], fut], 0) if fut is not None else np.zeros((n + h, 0))
    exo = np.concatenate([cov, D.calendar_features(times, meta["calendar"])], 1)
    z_full = np.concatenate([z, np.full((h, z.shape[1]), np.nan)], 0)   # targets of the future are unknown
    inputs = F.model_inputs(meta, times, z_full, exo)   # cycle phases come from the timestamps themselves
    start = np.array([n - lb])
    pred = F.predict_windows(members, inputs, start)
    scale = F.calibration(members)["scale"]
    quant = F.quantile_forecasts(members, inputs, pred, start)
    bands = {f"p{round(q * 100):02d}": scaler.inverse(v[0]) for q, v in quant.items()}
    band = SHORT_HISTORY_BAND if scale == "lagged_error" and n < lb + h else BANDS[scale]
    return scaler.inverse(pred[0]), bands, band
