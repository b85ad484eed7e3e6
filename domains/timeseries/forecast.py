"""The forecasting task: prepare -> windows -> model/baselines on the same test windows -> conformal quantiles.

Prepared folder: `series.parquet` (time, raw targets, raw covariates) + `forecast.json` (borders, names, freq).
Everything fitted (scaler, ridge, cycle) sees training rows only; validation picks penalties and calibrates.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from core.config import Config
from core.errors import UserError
from core.io import atomic_path, file_sha256, read_json, write_json
from core.runs import member_outputs
from domains.timeseries import baselines as B
from domains.timeseries import conformal
from domains.timeseries import data as D

SERIES, INFO = "series.parquet", "forecast.json"
DAY = pd.Timedelta("1D")
MIN_CYCLES = 100   # forecast.period=auto considers a cycle only if the training rows hold this many of it


def load_source(cfg: Config) -> tuple[pd.DataFrame, str, list[str], list[str], Any, dict[str, str]]:
    """(wide frame, time column, targets, covariates, borders or None, {file: sha256})."""
    d = cfg["data"]
    if d["dataset"] == "vic_elec":
        path = D.package_file("tsdata", "fpp3", "vic_elec.csv")
        return D.load_vic_elec(), "date", ["Demand", "Temperature"], ["Holiday"], None, {path.name: file_sha256(path)}
    if not d.get("path"):
        raise UserError(D.ETTH1_HINT if d["dataset"] == "etth1" else "data.path: set it to your CSV/Parquet file")
    path = Path(d["path"])
    if not path.exists():
        raise UserError(f"{path}: not found. " + (D.ETTH1_HINT if d["dataset"] == "etth1" else ""))
    frame = D.read_table(path)
    hashes = {path.name: file_sha256(path)}
    if d["dataset"] == "etth1":
        return frame, "date", list(frame.columns[1:]), [], D.ETTH1_BORDERS, hashes
    covariates = list(d["covariates"])
    time_col = d["time_column"]
    if d["format"] == "long":
        time_col = d["ds_column"]
        frame = D.long_to_wide(frame, path, d["id_column"], time_col, d["value_column"], covariates)
        targets = [c for c in frame.columns if c not in (time_col, *covariates)]
    else:
        targets = list(d["targets"]) or [c for c in frame.columns if c not in (time_col, *covariates)]
    return frame, time_col, targets, covariates, None, hashes


def prepare(cfg: Config, out_dir: Path) -> dict[str, str]:
    frame, time_col, targets, covariates, borders, hashes = load_source(cfg)
    if cfg["data.max_rows"]:
        frame = frame.iloc[: int(cfg["data.max_rows"])]
        borders = None if borders is None or borders[-1][1] > len(frame) else borders
    table = D.to_series(frame, cfg["data.path"] or cfg["data.dataset"], time_col, targets, covariates,
                        allow_nan=bool(cfg["data.allow_missing"]))
    borders = borders or D.borders_from_sizes(len(table.time), cfg["data.sizes"])
    lookback, horizon = int(cfg["forecast.lookback"]), int(cfg["forecast.horizon"])
    for name, border in zip(("train", "val", "test"), borders):
        if len(D.window_starts(border, lookback, horizon)) < 1:
            raise UserError(f"the {name} split (rows {border[0]}-{border[1]}) is too short for lookback {lookback} "
                            f"+ horizon {horizon}; use more rows, other data.sizes or a shorter forecast")
    out = pd.DataFrame(table.values, columns=targets)
    out.insert(0, "time", table.time)
    for k, c in enumerate(covariates):
        out[c] = table.covariates[:, k]
    with atomic_path(Path(out_dir) / SERIES) as tmp:
        out.to_parquet(tmp, index=False)
    write_json(Path(out_dir) / INFO, {"targets": targets, "covariates": covariates, "freq": table.freq,
                                      "time_column": time_col,
                                      "borders": [list(b) for b in borders],
                                      "dataset": {"etth1": "ETTh1"}.get(cfg["data.dataset"], cfg["data.dataset"])
                                      if cfg["data.dataset"] != "csv" else Path(cfg["data.path"]).stem})
    return hashes


class Prepared:
    """The prepared series in model units (train-standardized), with calendar covariates and phases."""

    def __init__(self, folder: Path, meta: Mapping[str, Any] | None = None, calendar=None):
        info = read_json(Path(folder) / INFO)
        frame = pd.read_parquet(Path(folder) / SERIES)
        self.info, self.time = info, pd.DatetimeIndex(frame["time"])
        self.targets, self.covariates, self.borders = info["targets"], info["covariates"], info["borders"]
        raw = frame[self.targets].to_numpy(np.float64)
        train_rows = raw[: self.borders[0][1]]
        self.scaler = D.Scaler.from_dict(meta["scaler"]) if meta else D.Scaler.fit(train_rows)
        self.z = self.scaler.transform(raw)
        calendar = meta["calendar"] if meta else calendar
        self.exo = np.concatenate([frame[self.covariates].to_numpy(np.float64),
                                   D.calendar_features(self.time, calendar)], 1)
        self.index = np.arange(len(frame))   # phase origin: the first prepared row

    def starts(self, split: int, lookback: int, horizon: int) -> np.ndarray:
        return D.window_starts(tuple(self.borders[split]), lookback, horizon)


def steps_per_day(freq: str) -> int:
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    return int(DAY / step) if step < DAY and DAY % step == pd.Timedelta(0) else (7 if step == DAY else 0)


def ridge_setup(p: Prepared, lookback: int, horizon: int, period: int, alphas) -> dict[str, Any]:
    """Closed-form cycle (train rows) + ridge (train windows, alpha by validation MSE)."""
    train_end = p.borders[0][1]
    cycle = B.fit_cycle(p.z[:train_end], p.index[:train_end] % period, period) if period else None
    resid = p.z - cycle[p.index % period] if period else p.z
    # the cycle's phase of a row is its index, so windows of the residual series are inputs and targets alike
    x_tr, y_tr = B.windows(resid, p.starts(0, lookback, horizon), lookback, horizon)
    x_va, y_va = B.windows(resid, p.starts(1, lookback, horizon), lookback, horizon)
    # with data.allow_missing, the closed form is fitted on the windows that are complete
    keep_tr = ~(np.isnan(x_tr).any((1, 2)) | np.isnan(y_tr).any((1, 2)))
    keep_va = ~(np.isnan(x_va).any((1, 2)) | np.isnan(y_va).any((1, 2)))
    if keep_tr.sum() < 2 or keep_va.sum() < 1:
        raise UserError("too few complete windows (without missing values) to fit the ridge/cycle forecaster; "
                        "fill the gaps or use a shorter forecast.lookback")
    x_tr, y_tr, x_va, y_va = x_tr[keep_tr], y_tr[keep_tr], x_va[keep_va], y_va[keep_va]
    alpha = B.choose_alpha(x_tr, y_tr, x_va, y_va, alphas)
    fit = B.fit_ridge(x_tr, y_tr, alpha)
    val_mse = float(np.mean((B.predict_ridge(fit, x_va) - y_va) ** 2))
    return {"cycle": cycle, "ridge": fit, "alpha": alpha, "val_mse": val_mse, "period": period}


def ridge_forecast(fit: dict[str, Any], x: np.ndarray, starts: np.ndarray, lookback: int,
                   horizon: int) -> np.ndarray:
    """The closed-form forecaster of `ridge_setup` on lookback windows x [W, L, C] starting at rows `starts`."""
    period = fit["period"]
    if not period:
        return B.predict_ridge(fit["ridge"], x)
    resid = x - B.cycle_at(fit["cycle"], starts % period, lookback)
    return B.predict_ridge(fit["ridge"], resid) + B.cycle_at(fit["cycle"], starts % period, horizon, lookback)


def choose_period(p: Prepared, cfg: Config, lookback: int, horizon: int, alphas) -> dict[str, Any]:
    """forecast.period: a number of steps, 0 (none) or auto = the one of {none, day, week} with the lowest
    validation MSE of cycle + ridge, among cycles whose every phase occurs at least MIN_CYCLES times in the
    training rows (a cycle is a per-phase mean: with fewer samples it fits noise; ETTh1's weekly cycle, 51
    weeks, won on validation and lost on test, .3825 vs the daily cycle's .3694)."""
    wanted = cfg["forecast.period"]
    if wanted != "auto":
        return ridge_setup(p, lookback, horizon, int(wanted), alphas)
    day = steps_per_day(p.info["freq"])
    candidates = [c for c in {0, day, 7 * day if day > 7 else 0} if MIN_CYCLES * c <= p.borders[0][1]]
    fits = [ridge_setup(p, lookback, horizon, c, alphas) for c in sorted(candidates)]
    return min(fits, key=lambda f: f["val_mse"])


def collate_fn(z: torch.Tensor, exo: torch.Tensor, lookback: int, horizon: int, period: int, mask: bool,
               phase_offset: int = 0):
    """Windows by start row; `phase_offset` is the absolute row (from the training origin) of row 0."""
    steps = torch.arange(lookback + horizon)

    def collate(starts: list[int]) -> dict[str, Any]:
        s = torch.as_tensor(starts)
        block = z[s[:, None] + steps]
        x, y = block[:, :lookback], block[:, lookback:]
        batch = {"x": torch.nan_to_num(x), "y": torch.nan_to_num(y), "exo": exo[s[:, None] + steps],
                 "phase": (s + phase_offset) % max(period, 1), "size": len(starts)}
        if mask:
            batch["x_mask"], batch["y_mask"] = (~x.isnan()).float(), (~y.isnan()).float()
        return batch

    return collate


def predict_windows(members, z: np.ndarray, exo: np.ndarray, starts: np.ndarray, batch: int = 512,
                    phase_offset: int = 0) -> np.ndarray:
    """Ensemble-mean forecasts [W, H, C] (model units) for windows starting at `starts`."""
    meta = members[0].metadata["task"]
    collate = collate_fn(torch.tensor(z, dtype=torch.float32), torch.tensor(exo, dtype=torch.float32),
                         meta["lookback"], meta["horizon"], meta["period"], meta["allow_missing"], phase_offset)
    outs = member_outputs(members, starts.tolist(), collate, batch,
                          empty_shape=(0, meta["horizon"], len(meta["targets"])))
    return sum(outs) / len(members)


def score_scale(members, how: str, z: np.ndarray, exo: np.ndarray, starts: np.ndarray, phase_offset: int = 0,
                fallback: np.ndarray | None = None) -> np.ndarray:
    """The conformal score scale [W, 1, C] of the windows at `starts` (see conformal.py), from data known at
    each forecast's origin. lagged_error needs the window one horizon earlier; where it does not exist
    (start < horizon) the `fallback` scale [C] (the calibration median) is used."""
    meta = members[0].metadata["task"]
    lb, h = meta["lookback"], meta["horizon"]
    if how != "lagged_error":
        return conformal.window_scale(np.nan_to_num(B.windows(z, starts, lb, h)[0]), how)
    out = np.empty((len(starts), 1, z.shape[1]))
    has = starts >= h
    if has.any():
        earlier = starts[has] - h
        truth = B.windows(z, earlier, lb, h)[1]
        out[has] = conformal.lagged_error_scale(truth, predict_windows(members, z, exo, earlier,
                                                                       phase_offset=phase_offset))
    if not has.all():
        if fallback is None:
            raise ValueError("lagged_error scale needs a fallback for windows without an earlier forecast")
        out[~has] = np.asarray(fallback)[None, None]
    return out


def quantile_forecasts(members, pred: np.ndarray, scale: np.ndarray) -> dict[float, np.ndarray]:
    return conformal.apply_offsets(pred, scale, calibration(members)["offsets"])


def calibration(members) -> dict[str, Any]:
    cal = members[0].metadata.get("calibration")
    if not cal:
        raise UserError(f"{members[0].path.parent}: no conformal calibration in this run; retrain it with "
                        "`sciformer train` (calibration is fitted on validation windows after training)")
    return cal
