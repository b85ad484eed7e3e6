"""The forecasting task: prepare -> windows -> model/baselines on the same test windows -> conformal quantiles.

Prepared folder: `series.parquet` (time, raw targets, raw covariates) + `forecast.json` (borders, names, freq,
dataset label). Everything fitted (scaler, cycle, ridge) sees training rows only; validation chooses the
closed form, stops training and calibrates the quantiles; test windows are only scored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from core.config import Config
from core.ensemble import mean_and_spread
from core.errors import UserError
from core.io import atomic_path, read_json, write_json
from core.runs import member_outputs
from domains.timeseries import conformal
from domains.timeseries import data as D
from domains.timeseries.sources import load_source

SERIES, INFO = "series.parquet", "forecast.json"


def prepare(cfg: Config, out_dir: Path) -> dict[str, str]:
    src = load_source(cfg["data"])
    frame, borders = src.frame, src.borders
    if cfg["data.max_rows"]:
        frame = frame.iloc[: int(cfg["data.max_rows"])]
        borders = None if borders is None or borders[-1][1] > len(frame) else borders
    table = D.to_series(frame, cfg["data.path"] or src.label, src.time_column, src.targets, src.covariates,
                        allow_nan=bool(cfg["data.allow_missing"]), freq=D.ROWS if src.steps == D.ROWS else None)
    borders = borders or D.borders_from_sizes(len(table.time), cfg["data.sizes"])
    lookback, horizon = int(cfg["forecast.lookback"]), int(cfg["forecast.horizon"])
    for name, border in zip(("train", "val", "test"), borders):
        if len(D.window_starts(border, lookback, horizon)) < 1:
            raise UserError(f"the {name} split (rows {border[0]}-{border[1]}) is too short for lookback {lookback} "
                            f"+ horizon {horizon}; use more rows, other data.sizes or a shorter forecast")
    out = pd.DataFrame(table.values, columns=src.targets)
    out.insert(0, "time", table.time)
    for k, c in enumerate(src.covariates):
        out[c] = table.covariates[:, k]
    with atomic_path(Path(out_dir) / SERIES) as tmp:
        out.to_parquet(tmp, index=False)
    write_json(Path(out_dir) / INFO, {"targets": src.targets, "covariates": src.covariates, "freq": table.freq,
                                      "time_column": src.time_column, "borders": [list(b) for b in borders],
                                      "dataset": src.label})
    return src.hashes


class Prepared:
    """The prepared series in model units (train-standardized), with calendar covariates. `z` keeps NaN where
    a value is missing; `z_in` is what lookback windows read (each gap filled with the last earlier value)."""

    def __init__(self, folder: Path, meta: Mapping[str, Any] | None = None, calendar=None):
        info = read_json(Path(folder) / INFO)
        frame = pd.read_parquet(Path(folder) / SERIES)
        self.info, self.time = info, pd.DatetimeIndex(frame["time"])
        self.targets, self.covariates, self.borders = info["targets"], info["covariates"], info["borders"]
        raw = frame[self.targets].to_numpy(np.float64)
        self.scaler = D.Scaler.from_dict(meta["scaler"]) if meta else D.Scaler.fit(raw[: self.borders[0][1]])
        self.z = self.scaler.transform(raw)
        self.z_in = D.past_filled(self.z)
        calendar = meta["calendar"] if meta else calendar
        self.exo = np.concatenate([frame[self.covariates].to_numpy(np.float64),
                                   D.calendar_features(self.time, calendar)], 1)

    def starts(self, split: int, lookback: int, horizon: int) -> np.ndarray:
        return D.window_starts(tuple(self.borders[split]), lookback, horizon)

    def window_targets(self, starts: np.ndarray, lookback: int, horizon: int) -> np.ndarray:
        return self.z[starts[:, None] + lookback + np.arange(horizon)[None]]

    def inputs(self, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return model_inputs(meta, self.time, self.z, self.exo, filled=self.z_in)


def model_inputs(meta: Mapping[str, Any], time: pd.DatetimeIndex, z: np.ndarray, exo: np.ndarray,
                 filled: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """What the model's collate reads for a series: inputs (gaps filled from the past), targets (NaN kept),
    exogenous values and the calendar phase of every row."""
    cyc = meta["cycle"]
    phase = D.phases(time, cyc["name"], cyc["keys"]) if cyc["keys"] else np.zeros(len(time), dtype=np.int64)
    return {"z_in": D.past_filled(z) if filled is None else filled, "z": z, "exo": exo, "phase": phase}


def collate_fn(inputs: Mapping[str, np.ndarray], lookback: int, horizon: int, mask: bool):
    """Windows by start row: x [B, L, C], y [B, H, C], exo [B, L+H, E], phase [B, L+H] (+ observed masks)."""
    z_in, z = torch.tensor(inputs["z_in"], dtype=torch.float32), torch.tensor(inputs["z"], dtype=torch.float32)
    exo = torch.tensor(inputs["exo"], dtype=torch.float32)
    phase = torch.as_tensor(inputs["phase"], dtype=torch.long)
    steps = torch.arange(lookback + horizon)

    def collate(starts: list[int]) -> dict[str, Any]:
        rows = torch.as_tensor(starts)[:, None] + steps
        y = z[rows[:, lookback:]]
        batch = {"x": z_in[rows[:, :lookback]], "y": torch.nan_to_num(y), "exo": exo[rows], "phase": phase[rows],
                 "size": len(starts)}
        if mask:
            batch["x_mask"] = (~z[rows[:, :lookback]].isnan()).float()
            batch["y_mask"] = (~y.isnan()).float()
        return batch

    return collate


def predict_windows(members, inputs: Mapping[str, np.ndarray], starts: np.ndarray, batch: int = 512) -> np.ndarray:
    """Ensemble-mean forecasts [W, H, C] (model units) for windows starting at `starts`."""
    meta = members[0].metadata["task"]
    collate = collate_fn(inputs, meta["lookback"], meta["horizon"], meta["allow_missing"])
    outs = member_outputs(members, starts.tolist(), collate, batch,
                          empty_shape=(0, meta["horizon"], len(meta["targets"])))
    return mean_and_spread(outs)[0]


def score_scale(members, how: str, inputs: Mapping[str, np.ndarray], starts: np.ndarray,
                fallback: np.ndarray | None = None, earlier: np.ndarray | None = None) -> np.ndarray:
    """The conformal score scale [W, 1, C] of the windows at `starts` (see conformal.py), from data known at
    each forecast's origin. lagged_error needs the forecast issued one horizon earlier (`earlier`: those
    forecasts, if already computed); where that window does not exist (start < horizon) the `fallback` scale
    [C] (the calibration median) is used."""
    meta = members[0].metadata["task"]
    lb, h = meta["lookback"], meta["horizon"]
    if how != "lagged_error":
        idx = starts[:, None] + np.arange(lb)[None]
        return conformal.window_scale(inputs["z_in"][idx], how)
    out = np.empty((len(starts), 1, inputs["z"].shape[1]))
    has = starts >= h
    if has.any():
        before = starts[has] - h
        truth = inputs["z"][before[:, None] + lb + np.arange(h)[None]]
        pred = earlier[has] if earlier is not None else predict_windows(members, inputs, before)
        out[has] = conformal.lagged_error_scale(truth, pred)
    if not has.all():
        if fallback is None:
            raise ValueError("lagged_error scale needs a fallback for windows without an earlier forecast")
        out[~has] = np.asarray(fallback)[None, None]
    return out


def calibrate(cfg: Config, prepared: Path, members) -> dict[str, Any]:
    """Split-conformal offsets for every score scale from the validation windows, and the scale to use:
    forecast.conformal_scale, or with `auto` the one chosen on a calibration fold of validation
    (conformal.choose_scale)."""
    meta = members[0].metadata["task"]
    lb, h = meta["lookback"], meta["horizon"]
    p = Prepared(prepared, meta)
    inputs = p.inputs(meta)
    st = p.starts(1, lb, h)
    with_earlier = st[st >= h]   # windows whose earlier forecast exists (the lagged_error scale)
    st = with_earlier if len(with_earlier) >= 2 else st
    y = p.window_targets(st, lb, h)
    pred = predict_windows(members, inputs, st)
    earlier = predict_windows(members, inputs, st[st >= h] - h)
    padded = np.zeros_like(pred)
    padded[st >= h] = earlier
    scales = {how: score_scale(members, how, inputs, st, fallback=np.ones(len(p.targets)), earlier=padded)
              for how in conformal.SCALES}
    windows = int((~np.isnan(y)).any((1, 2)).sum())
    if windows < 2:
        raise UserError(f"{prepared}: fewer than 2 validation windows with an observed target; conformal "
                        "calibration needs more (use other data.sizes)")
    wanted = cfg["forecast.conformal_scale"]
    selection = conformal.choose_scale(pred, y, scales, meta["quantiles"], h)
    chosen = selection["chosen"] if wanted == "auto" else wanted
    return {"quantiles": meta["quantiles"], "windows": windows, "scale": chosen, "requested": wanted,
            "selection": selection["scores"], "fold": selection["fold"],
            "scales": {how: {"median_scale": np.median(s[:, 0], 0).tolist(),   # windows without an earlier forecast
                             "offsets": conformal.fit_offsets(pred, y, s, meta["quantiles"])}
                       for how, s in scales.items()}}


def calibration(members, scale: str | None = None) -> dict[str, Any]:
    """The run's calibration for `scale` (default: the chosen one): {scale, offsets, median_scale}."""
    cal = members[0].metadata.get("calibration")
    if not cal or "scales" not in cal:
        raise UserError(f"{members[0].path.parent}: no conformal calibration in this run (or one from an older "
                        "version); retrain it with `sciformer train` (calibration follows training)")
    how = scale or cal["scale"]
    return {"scale": how, **cal["scales"][how]}


def quantile_forecasts(members, inputs: Mapping[str, np.ndarray], pred: np.ndarray, starts: np.ndarray,
                       scale: str | None = None) -> dict[float, np.ndarray]:
    cal = calibration(members, scale)
    s = score_scale(members, cal["scale"], inputs, starts, fallback=cal["median_scale"])
    return conformal.apply_offsets(pred, s, cal["offsets"])
