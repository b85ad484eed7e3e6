"""Batch prediction on genuinely new data: forecast the next horizon after the last row of each series.

Input: wide (the time column + one column per series + covariate columns) or long (`unique_id, ds, y` +
covariates). Rows after the last observed target may carry known-future covariates (exactly `horizon` of
them when the model uses covariates). Everything is checked before a model loads, naming the problem.
Output (long): unique_id, ds, y_pred and one column per quantile, in the data's own units.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.errors import UserError
from domains.timeseries import classify as CL
from domains.timeseries import data as D
from domains.timeseries import forecast as F
from domains.timeseries.sources import load_vic_elec

LONG = ("unique_id", "ds", "y")


def _wide(path: Path, meta: Mapping[str, Any]) -> tuple[pd.DataFrame, str]:
    frame = D.read_table(path)
    if len(frame) == 0:
        raise UserError(f"{path}: no data rows; nothing to forecast")
    if set(LONG) <= set(frame.columns):
        unknown = sorted(set(frame["unique_id"].astype(str)) - set(meta["targets"]))
        if unknown:
            raise UserError(f"{path}: series {unknown} were not in training (the model knows "
                            f"{meta['targets']}); a multivariate model forecasts only the series it was trained on")
        return D.long_to_wide(frame.assign(unique_id=frame["unique_id"].astype(str)), path, *LONG,
                              [c for c in meta["covariates"] if c in frame.columns]), "ds"
    time_col = meta["time_column"]
    if time_col not in frame.columns:
        raise UserError(f"{path}: no {time_col!r} time column and not long format ({', '.join(LONG)}); found "
                        f"{', '.join(map(str, frame.columns[:12]))}")
    known = {time_col, *meta["targets"], *meta["covariates"]}
    unknown = [c for c in frame.columns if c not in known]
    if unknown:
        raise UserError(f"{path}: column(s) {unknown} are neither a trained series ({meta['targets']}) nor a "
                        f"covariate ({meta['covariates'] or 'none'}); remove them or retrain with them")
    return frame, time_col


def read_new_series(path: Path, meta: Mapping[str, Any]):
    """-> (history SeriesTable, future covariates [horizon, E] or None, future timestamps)."""
    frame, time_col = _wide(path, meta)
    missing = [c for c in meta["targets"] if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: series {missing} are missing; the model forecasts {meta['targets']} jointly "
                        "and needs each one's recent history")
    miss_cov = [c for c in meta["covariates"] if c not in frame.columns]
    if miss_cov:
        raise UserError(f"{path}: covariate column(s) {miss_cov} are missing; the model was trained with "
                        f"{meta['covariates']} and needs their history and their next {meta['horizon']} values")
    frame = frame.assign(**{time_col: pd.to_datetime(frame[time_col], errors="coerce")}).sort_values(time_col)
    observed = frame[meta["targets"]].notna().any(axis=1).to_numpy()
    last = int(np.flatnonzero(observed)[-1]) if observed.any() else -1
    if last < 0:
        raise UserError(f"{path}: no observed values for {meta['targets']}")
    history, future = frame.iloc[: last + 1], frame.iloc[last + 1:]
    table = D.to_series(history, path, time_col, meta["targets"], meta["covariates"],
                        allow_nan=meta["allow_missing"], freq=meta["freq"])
    lb, h = meta["lookback"], meta["horizon"]
    if len(table.time) < lb:
        raise UserError(f"{path}: too little history: {len(table.time)} rows, the model reads the last {lb} "
                        f"(forecast.lookback); give at least {lb} rows per series")
    recent = table.values[-lb:]
    if np.isnan(recent).any() and not meta["allow_missing"]:
        r, c = np.argwhere(np.isnan(recent))[0]
        raise UserError(f"{path}: series {meta['targets'][c]!r} has no value at {table.time[-lb + r]} (NaN in "
                        "the lookback); fill it, or use a model trained with data.allow_missing=true")
    rows_steps = meta["freq"] == D.ROWS
    if rows_steps:   # the model's steps are rows (business hours): the file gives the future timestamps
        if len(future) != h:
            raise UserError(f"{path}: the model's steps are the rows of its series (not a regular clock), so the "
                            f"forecast's timestamps must be given: add exactly {h} rows after the last observation "
                            f"({table.time[-1]}) with their {time_col} and empty series columns (found {len(future)})")
        stamps = pd.DatetimeIndex(future[time_col])
        if stamps.isna().any() or not stamps.is_monotonic_increasing or stamps[0] <= table.time[-1] \
                or stamps.has_duplicates:
            raise UserError(f"{path}: the {h} future rows need increasing timestamps after {table.time[-1]}")
    else:
        stamps = D.future_index(table.time, meta["freq"], h)
    fut_cov = None
    if meta["covariates"]:
        if len(future) != h:
            raise UserError(f"{path}: the model uses known-future covariates {meta['covariates']}: add exactly "
                            f"{h} rows after the last observation ({table.time[-1]}) with their values and empty "
                            f"series columns (found {len(future)})")
        if not pd.DatetimeIndex(future[time_col]).equals(stamps):
            raise UserError(f"{path}: the {h} future covariate rows must be the next {h} steps "
                            f"{stamps[0]} .. {stamps[-1]} (every {meta['freq']})")
        fut_cov = future[meta["covariates"]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        if np.isnan(fut_cov).any():
            raise UserError(f"{path}: a future covariate value is missing or not a number; covariates must be "
                            "known for every forecast step")
    elif len(future) and not rows_steps:
        raise UserError(f"{path}: {len(future)} row(s) after the last observation have no series values and "
                        "the model uses no covariates; remove them")
    return table, fut_cov, stamps


def validate(path: Path, columns: list[str], meta: Mapping[str, Any]) -> None:
    if meta["kind"] == "classify":
        read_classify_input(path, meta)
    else:
        read_new_series(path, meta)


def predict_forecast(members, path: Path, out_tmp: Path, on_invalid: str) -> dict[str, Any]:
    meta = members[0].metadata["task"]
    table, fut_cov, stamps = read_new_series(path, meta)
    lb, h = meta["lookback"], meta["horizon"]
    scaler = D.Scaler.from_dict(meta["scaler"])
    # the last lookback + horizon rows when there are that many: the forecast issued one horizon ago (its
    # errors are now observed) scales the conformal band (lagged_error); with less history the calibration's
    # median does
    n = min(len(table.time), lb + h)
    z = scaler.transform(table.values[-n:])
    times = table.time[-n:].append(stamps)
    cov = np.concatenate([table.covariates[-n:], fut_cov], 0) if fut_cov is not None else np.zeros((n + h, 0))
    exo = np.concatenate([cov, D.calendar_features(times, meta["calendar"])], 1)
    z_full = np.concatenate([z, np.full((h, z.shape[1]), np.nan)], 0)   # targets of the future are unknown
    inputs = F.model_inputs(meta, times, z_full, exo)   # cycle phases come from the timestamps themselves
    start = np.array([n - lb])
    pred = F.predict_windows(members, inputs, start)
    cal = F.calibration(members)
    quant = F.quantile_forecasts(members, inputs, pred, start)
    y_pred = scaler.inverse(pred[0])                                     # [H, C] in the data's units
    bands = {f"p{round(q * 100):02d}": scaler.inverse(v[0]) for q, v in quant.items()}
    rows = []
    for c, name in enumerate(meta["targets"]):
        part = pd.DataFrame({"unique_id": name, "ds": stamps, "y_pred": y_pred[:, c]})
        for col, v in bands.items():
            part[col] = v[:, c]
        rows.append(part)
    out = pd.concat(rows, ignore_index=True)
    _write(out, out_tmp)
    band = {"none": "band_from_validation_residuals", "lookback_std": "band_scaled_by_lookback_spread",
            "lagged_error": "band_from_last_forecast_error" if n == lb + h else
            "band_from_median_error (history shorter than lookback + horizon)"}[cal["scale"]]
    return {"rows_in": len(table.time), "rows_out": len(out), "status": {f"forecast, {band}": len(meta["targets"])}}


def read_classify_input(path: Path, meta: Mapping[str, Any]) -> list[np.ndarray]:
    if path.suffix.lower() != ".ts":
        raise UserError(f"{path}: classification input must be a UEA/UCR .ts file")
    series, _ = CL.read_ts(path, labels_optional=True)
    bad = [i for i, s in enumerate(series) if s.shape[1] != meta["dims"]]
    if bad:
        raise UserError(f"{path}: series {bad[0] + 1} has {series[bad[0]].shape[1]} dimensions; the model was "
                        f"trained on {meta['dims']}")
    return series


def predict_classes(members, path: Path, out_tmp: Path, on_invalid: str) -> dict[str, Any]:
    meta = members[0].metadata["task"]
    series = read_classify_input(path, meta)
    proba = CL.class_probabilities(members, series)
    out = pd.DataFrame({"series": np.arange(1, len(series) + 1), "length": [len(s) for s in series],
                        "predicted_class": np.array(meta["classes"])[proba.argmax(1)]})
    for k, c in enumerate(meta["classes"]):
        out[f"p_{c}"] = proba[:, k]
    _write(out, out_tmp)
    return {"rows_in": len(series), "rows_out": len(out), "status": {"ok": len(series)}}


def _write(frame: pd.DataFrame, tmp: Path) -> None:
    if tmp.suffix.lower() == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)


def example_inputs(folder: Path) -> tuple[Path, Path, str]:
    """A slice of vic_elec in long format with its next-day holiday flags; the bad one lacks a series."""
    full = load_vic_elec().iloc[-200:]
    hist, fut = full.iloc[:-24], full.iloc[-24:]
    long = pd.concat([pd.DataFrame({"unique_id": s, "ds": hist["date"], "y": hist[s], "Holiday": hist["Holiday"]})
                      for s in ("Demand", "Temperature")]
                     + [pd.DataFrame({"unique_id": "Demand", "ds": fut["date"], "y": np.nan,
                                      "Holiday": fut["Holiday"]})], ignore_index=True)
    good, bad = folder / "new_series.csv", folder / "missing_series.csv"
    long.to_csv(good, index=False)
    long[long.unique_id != "Temperature"].to_csv(bad, index=False)
    return good, bad, "series ['Temperature'] are missing"
