"""Forecasting data: loaders (embedded vic_elec, ETTh1, users' wide/long CSV/Parquet), calendar covariates,
chronological splits, the train-only scaler, and the literature's windowing (TSLib/iTransformer protocol).

Windowing (why these borders): split s covers target rows [b1, b2). Its windows read the `lookback` rows
before each forecast, so val/test windows may look back into the previous split, exactly as TSLib does;
the first forecast of a split starts at b1. Number of windows = b2 - b1 - horizon + 1 (train: b1 = lookback).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError

ETTH1_BORDERS = ((0, 8640), (8640, 11520), (11520, 14400))   # Informer/iTransformer protocol, 12/4/4 months
CALENDAR = ("hour", "dayofweek", "dayofyear")   # known-future calendar covariates, scaled to [-0.5, 0.5]
CYCLES = ("day", "week", "year")                # calendar cycles a closed-form cycle may follow
ROWS = "rows"   # `freq` of a series whose rows are its steps (business hours): timestamps only give the calendar


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package's folder, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {package!r} is not installed; run `make setup` (env/install.sh installs it)")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.exists():
        raise UserError(f"{path}: not found in the installed {package!r}; reinstall it with `make setup`")
    return path


@dataclass
class SeriesTable:
    """A regular multivariate series: time index + target columns + known-future covariate columns."""

    time: pd.DatetimeIndex
    values: np.ndarray            # [N, C] targets (may hold NaN only where the user allowed it)
    covariates: np.ndarray        # [N, E] known-future covariates (holiday flags, your regressors)
    targets: list[str]
    covariate_names: list[str]
    freq: str


def read_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() != ".csv":
        raise UserError(f"{path}: expected a .csv or .parquet file, got {path.suffix or 'no extension'}")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty; it needs a header row and data rows") from None


def long_to_wide(frame: pd.DataFrame, path, id_col: str, time_col: str, value_col: str,
                 covariates: list[str]) -> pd.DataFrame:
    """`unique_id, ds, y` (+ covariates per timestamp) -> one column per series (+ covariate columns)."""
    for col in (id_col, time_col, value_col):
        if col not in frame:
            raise UserError(f"{path}: long format needs columns {id_col!r}, {time_col!r}, {value_col!r}; "
                            f"{col!r} is missing (found: {', '.join(map(str, frame.columns[:12]))})")
    dup = frame.duplicated([id_col, time_col])
    if dup.any():
        row = frame[dup].iloc[0]
        raise UserError(f"{path}: series {row[id_col]!r} has timestamp {row[time_col]} twice (row "
                        f"{int(np.argmax(dup.to_numpy())) + 2}); keep one row per series and time")
    wide = frame.pivot(index=time_col, columns=id_col, values=value_col)
    wide.columns = [str(c) for c in wide.columns]
    if covariates:
        cov = frame.groupby(time_col)[covariates].first()
        wide = wide.join(cov)
    return wide.reset_index()


def to_series(frame: pd.DataFrame, path, time_col: str, targets: list[str], covariates: list[str],
              allow_nan: bool = False, freq: str | None = None) -> SeriesTable:
    """Check and convert a wide frame: parseable, sorted, regular timestamps (any increasing ones when
    freq is ROWS); numeric columns; NaN policy."""
    if time_col not in frame:
        raise UserError(f"{path}: no time column {time_col!r} (found: {', '.join(map(str, frame.columns[:12]))}); "
                        "set data.time_column")
    missing = [c for c in [*targets, *covariates] if c not in frame]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing} (found: {', '.join(map(str, frame.columns[:20]))})")
    time = pd.to_datetime(frame[time_col], errors="coerce")
    if time.isna().any():
        bad = int(np.argmax(time.isna().to_numpy()))
        raise UserError(f"{path}: row {bad + 2}: {time_col}={frame[time_col].iloc[bad]!r} is not a timestamp")
    order = np.argsort(time.to_numpy(), kind="stable")
    time, frame = pd.DatetimeIndex(time.to_numpy()[order]), frame.iloc[order]
    if time.has_duplicates:
        raise UserError(f"{path}: timestamp {time[time.duplicated()][0]} appears twice; one row per time step")
    freq = ROWS if freq == ROWS else check_regular(time, path, freq)
    numeric = {}
    for col in [*targets, *covariates]:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & frame[col].notna()
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise UserError(f"{path}: row {i + 2}, column {col!r}: {frame[col].iloc[i]!r} is not a number")
        numeric[col] = values.to_numpy(np.float64)
    values = np.stack([numeric[c] for c in targets], 1) if targets else np.zeros((len(time), 0))
    cov = np.stack([numeric[c] for c in covariates], 1) if covariates else np.zeros((len(time), 0))
    for name, block, cols in (("target", values, targets), ("covariate", cov, covariates)):
        nan = np.isnan(block)
        if nan.any() and (name == "covariate" or not allow_nan):
            r, c = np.argwhere(nan)[0]
            raise UserError(f"{path}: {name} column {cols[c]!r} is missing a value at {time[r]} (row {r + 2}); "
                            "fill it (interpolate) or drop that series; covariates must be complete"
                            if name == "covariate" else
                            f"{path}: target column {cols[c]!r} is missing a value at {time[r]} (row {r + 2}); "
                            "fill it, or train with data.allow_missing=true so the model reads a mask")
    return SeriesTable(time, values, cov, list(targets), list(covariates), freq)


def check_regular(time: pd.DatetimeIndex, path, freq: str | None = None) -> str:
    """The step between rows must be constant: windows assume it. Name the first gap or irregular step."""
    if freq is None and len(time) < 3:   # the step is inferred from the data
        raise UserError(f"{path}: only {len(time)} timestamps; need a regular series of many steps")
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq)) if freq else pd.Series(time).diff().mode().iloc[0]
    diffs = pd.Series(time).diff().iloc[1:]
    bad = diffs != step
    if bad.any():
        i = int(np.argmax(bad.to_numpy())) + 1
        gap = diffs.iloc[i - 1]
        what = "missing timestamp(s)" if gap > step and gap % step == pd.Timedelta(0) else "an irregular step"
        every = pd.tseries.frequencies.to_offset(step).freqstr
        raise UserError(f"{path}: {what} between {time[i - 1]} and {time[i]} (the series steps every {every}); "
                        "reindex to a regular grid and fill the gaps")
    return pd.tseries.frequencies.to_offset(step).freqstr


def calendar_features(time: pd.DatetimeIndex, names) -> np.ndarray:
    """Calendar covariates known for any future step; centred in [-0.5, 0.5] as in TSLib's time features."""
    cols = []
    for name in names:
        if name == "hour":
            cols.append((time.hour + time.minute / 60) / 23.5 - 0.5)
        elif name == "dayofweek":
            cols.append(time.dayofweek / 6.0 - 0.5)
        elif name == "dayofyear":
            cols.append((time.dayofyear - 1) / 365.0 - 0.5)
        else:
            raise UserError(f"data.calendar: unknown feature {name!r}; choose from {', '.join(CALENDAR)}")
    return np.stack(cols, 1).astype(np.float64) if cols else np.zeros((len(time), 0))


def future_index(time: pd.DatetimeIndex, freq: str, horizon: int) -> pd.DatetimeIndex:
    return pd.date_range(time[-1], periods=horizon + 1, freq=freq)[1:]


def phase_key(time: pd.DatetimeIndex, cycle: str) -> np.ndarray:
    """Where each timestamp sits in a calendar cycle, as an integer: the time of day, (weekday, time of day)
    or (month, day, time of day). Phases come from the timestamps, not from row counts, so new data, gaps
    and series whose rows skip nights and weekends (bank_calls) all land on the right phase."""
    seconds = (time.hour * 3600 + time.minute * 60 + time.second).to_numpy(np.int64)
    if cycle == "day":
        return seconds
    if cycle == "week":
        return time.dayofweek.to_numpy(np.int64) * 86400 + seconds
    if cycle == "year":
        return (time.month.to_numpy(np.int64) * 32 + time.day.to_numpy(np.int64)) * 86400 + seconds
    raise ValueError(f"unknown cycle {cycle!r}; choose from {CYCLES}")


def cycle_keys(train_time: pd.DatetimeIndex, cycle: str) -> list[int] | None:
    """The phases of `cycle` in the training rows, or None when the cycle cannot be estimated there: it has
    one phase only (a daily cycle of daily data), or some phase occurs fewer than twice (a per-phase mean of
    one sample is that sample). This is a feasibility rule fixed in advance; validation chooses among the rest."""
    keys, counts = np.unique(phase_key(train_time, cycle), return_counts=True)
    return keys.tolist() if len(keys) > 1 and counts.min() >= 2 else None


def phases(time: pd.DatetimeIndex, cycle: str, keys) -> np.ndarray:
    """Phase index of each timestamp in `keys` (the training phases); an unseen phase gets len(keys), whose
    cycle value stays 0."""
    keys = np.asarray(keys, dtype=np.int64)
    k = phase_key(time, cycle)
    idx = np.clip(np.searchsorted(keys, k), 0, len(keys) - 1)
    return np.where(keys[idx] == k, idx, len(keys))


def past_filled(values: np.ndarray) -> np.ndarray:
    """Each missing value replaced by the channel's last earlier observation (0, the training mean on the
    standardized scale, before the first one): lookback inputs then use only data known at forecast time."""
    frame = pd.DataFrame(values).ffill()
    return frame.fillna(0.0).to_numpy(np.float64)


def borders_from_sizes(n: int, sizes) -> tuple[tuple[int, int], ...]:
    """Chronological train/val/test row ranges from fractions (TSLib's custom-dataset rule: 0.7/0.1/0.2)."""
    n_train, n_test = int(n * sizes[0]), int(n * sizes[2])
    n_val = n - n_train - n_test
    return (0, n_train), (n_train, n_train + n_val), (n_train + n_val, n)


def window_starts(border: tuple[int, int], lookback: int, horizon: int) -> np.ndarray:
    """Start rows of every window whose forecast targets lie in [b1, b2) (stride 1, nothing dropped)."""
    b1, b2 = border
    first = max(b1, lookback) - lookback
    last = b2 - horizon - lookback          # inclusive
    return np.arange(first, last + 1) if last >= first else np.zeros(0, dtype=int)


class Scaler:
    """Per-column z-score fitted on training rows only (saved with the model; test rows never seen)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean, self.std = np.asarray(mean, float), np.asarray(std, float)

    @classmethod
    def fit(cls, values: np.ndarray) -> "Scaler":
        std = np.nanstd(values, 0)
        return cls(np.nanmean(values, 0), np.where(std > 0, std, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        return cls(d["mean"], d["std"])
