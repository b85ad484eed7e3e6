"""New data to forecast: the next horizon after the last row of each series, read and checked before any model
loads (`ForecastReader.check` is exactly what `validate -i` and `predict` run first).

Input: wide (the time column + one column per series + covariate columns) or long (`unique_id, ds, y` +
covariates). Rows after the last observed target may carry known-future covariates (exactly `horizon` of
them when the model uses covariates). Every problem is named: the line of a bad cell (not a timestamp, not a
number, not finite, a time zone), the timestamp of a gap or of a covariate the series disagree on, the series
that is missing or unknown.

Values the model cannot judge: a finite value further than data.OUT_OF_RANGE_SD training standard deviations
from the training mean, among the rows the forecast reads (its lookback, the forecast issued one horizon earlier,
the future covariates), gives NaN forecasts with status `out_of_range` (never a confident number).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from core.errors import UserError
from core.readers import Batch, Reader, separator_hint
from domains.timeseries import data as D

LONG = ("unique_id", "ds", "y")


@dataclass
class NewSeries:
    history: D.SeriesTable                 # the observed rows (regular, checked)
    future_covariates: np.ndarray | None   # [horizon, E] known-future covariates, or None without covariates
    stamps: pd.DatetimeIndex               # the forecast's timestamps


def _wide(path: Path, meta: Mapping[str, Any]) -> tuple[pd.DataFrame, str]:
    """The file as a wide frame with parsed timestamps and float columns (bad cells named by their line)."""
    frame = D.read_table(path)
    if len(frame) == 0:
        raise UserError(f"{path}: no data rows (only a header); nothing to forecast")
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
                        f"{', '.join(map(str, frame.columns[:12]))}{separator_hint(frame.columns)}")
    known = {time_col, *meta["targets"], *meta["covariates"]}
    unknown = [c for c in frame.columns if c not in known]
    if unknown:
        raise UserError(f"{path}: column(s) {unknown} are neither a trained series ({meta['targets']}) nor a "
                        f"covariate ({meta['covariates'] or 'none'}); remove them or retrain with them")
    numbers = D.numeric_columns(frame, path, [c for c in frame.columns if c != time_col])
    return frame.assign(**{time_col: D.parse_times(frame[time_col], path, time_col)}, **numbers), time_col


def _history_end(frame: pd.DataFrame, path: Path, time_col: str, meta: Mapping[str, Any]) -> int:
    """Index of the last history row: the last one with an observed target. Without the missing-value mask,
    every series must end there: a target value in a later row (a future row) is named as such."""
    targets = meta["targets"]
    observed = frame[targets].notna().to_numpy()
    if not observed.any():
        raise UserError(f"{path}: no observed values for {targets}")
    ends = [int(np.flatnonzero(observed[:, c])[-1]) if observed[:, c].any() else -1 for c in range(len(targets))]
    last = max(ends)
    behind = [t for t, e in zip(targets, ends) if e < last]
    if behind and not meta["allow_missing"]:
        time = frame[time_col].to_numpy()
        ahead = [t for t, e in zip(targets, ends) if e == last]
        stops = ", ".join(f"{t} at {pd.Timestamp(time[e])}" if e >= 0 else f"{t} has no value at all"
                          for t, e in zip(targets, ends) if e < last)
        raise UserError(f"{path}: {ahead} has a value at {pd.Timestamp(time[last])}, after the last value of "
                        f"{behind} ({stops}); the forecast starts after the last row where every series is "
                        "observed. In future rows leave the series columns empty (only covariates are known "
                        "ahead); if a series is missing a value there, fill it or use a model trained with "
                        "data.allow_missing=true")
    return last


def read_new_series(path: Path, meta: Mapping[str, Any]) -> NewSeries:
    frame, time_col = _wide(path, meta)
    missing = [c for c in meta["targets"] if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: series {missing} are missing; the model forecasts {meta['targets']} jointly "
                        "and needs each one's recent history")
    miss_cov = [c for c in meta["covariates"] if c not in frame.columns]
    if miss_cov:
        raise UserError(f"{path}: covariate column(s) {miss_cov} are missing; the model was trained with "
                        f"{meta['covariates']} and needs their history and their next {meta['horizon']} values")
    frame = frame.sort_values(time_col, kind="stable").reset_index(drop=True)
    last = _history_end(frame, path, time_col, meta)
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
        if not stamps.is_monotonic_increasing or stamps[0] <= table.time[-1] or stamps.has_duplicates:
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
        fut_cov = future[meta["covariates"]].to_numpy(np.float64)
        if np.isnan(fut_cov).any():
            r, c = np.argwhere(np.isnan(fut_cov))[0]
            raise UserError(f"{path}: the future covariate {meta['covariates'][c]!r} has no value at {stamps[r]}; "
                            "covariates must be known for every forecast step")
    elif len(future) and not rows_steps:
        raise UserError(f"{path}: {len(future)} row(s) after the last observation have no series values and "
                        "the model uses no covariates; remove them")
    return NewSeries(table, fut_cov, stamps)


def rows_read(meta: Mapping[str, Any], s: NewSeries) -> int:
    """History rows a forecast reads: lookback + horizon when there are that many (the forecast issued one
    horizon ago, whose errors are now observed, scales the conformal band), else what there is."""
    return min(len(s.history.time), meta["lookback"] + meta["horizon"])


def out_of_range(meta: Mapping[str, Any], s: NewSeries) -> str | None:
    """Why the model cannot judge this input: the first value the forecast reads that lies beyond
    D.OUT_OF_RANGE_SD training standard deviations (targets: the model's scaler; covariates: their training
    statistics, in runs that saved them). None when every value is in range."""
    n = rows_read(meta, s)
    blocks = [("series", meta["targets"], s.history.time[-n:], s.history.values[-n:], meta["scaler"])]
    if meta.get("covariate_scaler") and meta["covariates"]:
        cov = s.history.covariates[-n:]
        times = s.history.time[-n:]
        if s.future_covariates is not None:
            cov, times = np.concatenate([cov, s.future_covariates]), times.append(s.stamps)
        blocks.append(("covariate", meta["covariates"], times, cov, meta["covariate_scaler"]))
    for what, names, times, values, scaler in blocks:
        z = np.abs(D.Scaler.from_dict(scaler).transform(values))
        far = np.nan_to_num(z) > D.OUT_OF_RANGE_SD
        if far.any():
            r, c = np.argwhere(far)[0]
            return (f"{what} {names[c]!r} at {times[r]}: {values[r, c]:g} is {z[r, c]:.3g} training standard "
                    f"deviations from the training mean (more than {D.OUT_OF_RANGE_SD:g}): outside what the model "
                    "can judge")
    return None


class ForecastReader(Reader):
    """The whole table as one batch (a forecast starts after the last row of every series); its items are the
    series forecast."""

    formats = (".csv", ".parquet")
    whole = True
    required = ["unique_id", "ds"]   # what an --on-invalid error shows of an output row

    def __init__(self, meta: Mapping[str, Any]):
        self.meta = meta

    def check(self, path: Path) -> None:
        read_new_series(path, self.meta)

    def batches(self, path: Path, size: int) -> Iterator[Batch]:
        yield Batch(read_new_series(path, self.meta), list(self.meta["targets"]), 0)
