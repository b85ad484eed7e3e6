"""Forecasting data: loaders (embedded vic_elec, ETTh1, users' wide/long CSV/Parquet), calendar covariates,
chronological splits, the train-only scaler, and the literature's windowing (TSLib/iTransformer protocol).

Windowing (why these borders): split s covers target rows [b1, b2). Its windows read the `lookback` rows
before each forecast, so val/test windows may look back into the previous split, exactly as TSLib does;
the first forecast of a split starts at b1. Number of windows = b2 - b1 - horizon + 1 (train: b1 = lookback).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError
from core.readers import decoding_errors, separator_hint

ETTH1_BORDERS = ((0, 8640), (8640, 11520), (11520, 14400))   # Informer/iTransformer protocol, 12/4/4 months
CALENDAR = ("hour", "dayofweek", "dayofyear")   # known-future calendar covariates, scaled to [-0.5, 0.5]
CYCLES = ("day", "week", "year")                # calendar cycles a closed-form cycle may follow
# Values a model cannot judge: further than this many training standard deviations from the training mean
# (forecast inputs, series to classify) give NaN predictions with status `out_of_range`. A fixed rule, set
# before any test number was seen and never tuned: a standardized series in training stays far inside it, so
# only corrupt or mis-scaled values (1e300, W instead of kW) trip it.
OUT_OF_RANGE_SD = 50.0
ROWS = "rows"   # `freq` of a series whose rows are its steps (business hours): timestamps only give the calendar
# a clock time followed by a UTC offset ("13:00+01:00", "13:00:00Z"): a zoned timestamp
_ZONE = re.compile(r"\d:\d\d(?::\d\d(?:\.\d+)?)?\s*(?:Z|UTC|[+-]\d\d(?::?\d\d)?)$")


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
    """A CSV or Parquet file as a frame; encoding, Parquet and ragged-row failures name the file (a first row
    with an extra field is an error, never a shifted index)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise UserError(f"{path}: expected a .csv or .parquet file, got {path.suffix or 'no extension'}")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty; it needs a header row and data rows")
    with decoding_errors(path, "table"), warnings.catch_warnings():
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(path, index_col=False, on_bad_lines="error", encoding="utf-8")


def row_name(path, i: int) -> str:
    """Data row i (0-based, in file order) as a user finds it: its line in a CSV file (the header is line 1),
    its row number otherwise."""
    return f"line {i + 2}" if str(path).lower().endswith(".csv") else f"row {i + 1}"


DST_NOTE = ("local clock times skip an hour in spring and repeat one in autumn where daylight saving time "
            "changes: that is the likely cause if this is such a night")


def _dst_night(stamp: pd.Timestamp, step: pd.Timedelta) -> bool:
    """Whether a gap or repeat could be a daylight-saving change: sub-hourly to hourly steps, in the small hours
    of a March/April or October/November night (the months the common zones change in)."""
    return pd.Timedelta(0) < step <= pd.Timedelta(hours=1) and stamp.month in (3, 4, 10, 11) and stamp.hour <= 3


def _repeat_note(twice: pd.Timestamp, times) -> str:
    """The daylight-saving note for a timestamp given twice, where the series' usual step makes it plausible."""
    unique = pd.Series(pd.DatetimeIndex(times).unique().sort_values())
    step = unique.diff().mode().iloc[0] if len(unique) > 2 else pd.Timedelta(0)
    return f" ({DST_NOTE}: average the repeated hour's rows into one)" if _dst_night(twice, step) else ""


def _ambiguous_day_month(text: pd.Series, month_first: pd.Series, path, col: str) -> None:
    """Slashed dates with every day <= 12 parse either way; pandas reads them month-first. Where that order
    jumps about and the day-first reading runs forward, the file is day-first: refuse rather than scramble it
    (the usual symptom would be a 'missing timestamps' error a month wide)."""
    slashed = r"^\d{1,2}[/.]\d{1,2}[/.]\d{2,4}"
    if not len(text) or not re.match(slashed, text.iloc[0]) or not text.str.match(slashed).all():
        return   # the first cell decides for ISO files without a pass over every cell
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        day_first = pd.to_datetime(text, errors="coerce", dayfirst=True)
    if not (day_first.notna().all() and month_first.notna().all()) or day_first.equals(month_first):
        return

    def regular(t: pd.Series) -> float:   # share of steps equal to the most common one
        steps = t.sort_values().diff().iloc[1:]
        return float((steps == steps.mode().iloc[0]).mean()) if len(steps) else 1.0
    if regular(day_first) >= 0.9 > regular(month_first):
        raise UserError(f"{path}: column {col!r}: dates like {text.iloc[-1]!r} are ambiguous; read month-first (as "
                        "pandas does) their steps are irregular, read day-first they are regular: write them as "
                        "YYYY-MM-DD (ISO 8601) so no day is taken for a month")


def parse_times(values: pd.Series, path, col: str) -> pd.Series:
    """Timestamps of a column in file order; a cell that is not a timestamp, or one with a time zone, is named
    by its line. The calendar (hour, weekday, cycle phase) is local wall-clock time, so zoned stamps are refused
    rather than guessed."""
    zone_fix = ("sciformer reads local wall-clock times without a zone (the calendar effects follow local "
                "time): write them without the offset, e.g. in pandas .dt.tz_convert('<your zone>')"
                ".dt.tz_localize(None)")
    if getattr(values.dtype, "tz", None) is not None or "tz=" in str(values.dtype):
        raise UserError(f"{path}: column {col!r} holds time-zone-aware timestamps ({values.dtype}); {zone_fix}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # pandas warns about mixed offsets; they are reported below
        time = pd.to_datetime(values, errors="coerce")
    text = values.astype(str).str.strip()
    zoned = text.str.contains(_ZONE)
    if getattr(time.dtype, "tz", None) is not None or time.dtype == object or zoned.any():
        i = int(np.argmax(zoned.to_numpy())) if zoned.any() else 0
        raise UserError(f"{path}: {row_name(path, i)}: {col}={values.iloc[i]!r} carries a time zone (UTC "
                        f"offset); {zone_fix}")
    _ambiguous_day_month(text, time, path, col)
    bad = time.isna().to_numpy()
    if bad.any():   # pandas infers one format from the first cells: ISO 8601 cells in another precision
        with warnings.catch_warnings():   # (2023-01-21 20:00 among ...:00:00) are still unambiguous
            warnings.simplefilter("ignore")
            time[bad] = pd.to_datetime(values[bad], format="ISO8601", errors="coerce")
        bad = time.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            day_first = pd.to_datetime(values, errors="coerce", dayfirst=True).notna().all()
        fix = ("the dates look day-first (DD/MM/YYYY), read month-first from the first rows: write them as "
               "YYYY-MM-DD (ISO 8601) so no day is taken for a month" if day_first else "fix or remove that row")
        raise UserError(f"{path}: {row_name(path, i)}: {col}={values.iloc[i]!r} is not a timestamp "
                        f"(e.g. {time[~bad].iloc[0] if (~bad).any() else '2024-01-31 13:00'}); {fix}")
    return time


def numeric_columns(frame: pd.DataFrame, path, columns) -> dict[str, np.ndarray]:
    """Float columns (an empty cell is NaN: missing); a cell that is not a number, or not finite (inf), is
    named by its line and column."""
    out = {}
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        num = values.to_numpy(np.float64, na_value=np.nan)
        bad = (values.isna() & frame[col].notna()).to_numpy() | np.isinf(num)
        if bad.any():
            i = int(np.argmax(bad))
            why = "is not finite" if np.isinf(num[i]) else "is not a number"
            raise UserError(f"{path}: {row_name(path, i)}, column {col!r}: {_cell(frame[col].iloc[i])} {why}; "
                            "every value must be a finite number (leave the cell empty where a value is missing)")
        out[col] = num
    return out


def _cell(value) -> str:
    """A cell as the user wrote it: a number plainly (inf, 1e+300), anything else quoted ('4.2kW')."""
    try:
        return str(float(value))
    except (TypeError, ValueError):
        return repr(str(value))


def long_to_wide(frame: pd.DataFrame, path, id_col: str, time_col: str, value_col: str,
                 covariates: list[str]) -> pd.DataFrame:
    """`unique_id, ds, y` (+ covariates per timestamp) -> one column per series (+ covariate columns)."""
    for col in (id_col, time_col, value_col):
        if col not in frame:
            raise UserError(f"{path}: long format needs columns {id_col!r}, {time_col!r}, {value_col!r}; "
                            f"{col!r} is missing (found: {', '.join(map(str, frame.columns[:12]))})")
    # cells first, in file order, so a problem is named by its line (the pivot below loses it)
    frame = frame.assign(**{time_col: parse_times(frame[time_col], path, time_col)},
                         **numeric_columns(frame, path, [value_col, *covariates]))
    dup = frame.duplicated([id_col, time_col])
    if dup.any():
        i = int(np.argmax(dup.to_numpy()))
        twice = frame[time_col].iloc[i]
        raise UserError(f"{path}: {row_name(path, i)}: series {frame[id_col].iloc[i]!r} has timestamp "
                        f"{twice} twice; keep one row per series and time{_repeat_note(twice, frame[time_col])}")
    wide = frame.pivot(index=time_col, columns=id_col, values=value_col)
    wide.columns = [str(c) for c in wide.columns]
    if covariates:
        groups = frame.groupby(time_col)[covariates]
        disagree = groups.nunique() > 1   # a covariate is one value per timestamp, whichever series row gives it
        if disagree.any(axis=None):
            t, col = disagree.stack()[lambda x: x].index[0]
            seen = frame.loc[frame[time_col] == t, [id_col, col]].dropna()
            raise UserError(f"{path}: at {t} the series disagree on covariate {col!r} "
                            f"({', '.join(f'{i}: {v:g}' for i, v in seen.itertuples(index=False))}); a covariate "
                            "has one value per timestamp: make the rows agree (or leave all but one empty)")
        wide = wide.join(groups.first())
    return wide.reset_index()


def to_series(frame: pd.DataFrame, path, time_col: str, targets: list[str], covariates: list[str],
              allow_nan: bool = False, freq: str | None = None) -> SeriesTable:
    """Check and convert a wide frame: parseable, sorted, regular timestamps (any increasing ones when
    freq is ROWS); numeric columns; NaN policy."""
    if time_col not in frame:
        raise UserError(f"{path}: no time column {time_col!r} (found: {', '.join(map(str, frame.columns[:12]))}); "
                        f"set data.time_column{separator_hint(frame.columns)}")
    missing = [c for c in [*targets, *covariates] if c not in frame]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing} (found: {', '.join(map(str, frame.columns[:20]))})")
    time = parse_times(frame[time_col], path, time_col)
    numeric = numeric_columns(frame, path, [*targets, *covariates])   # file order: errors name the line
    order = np.argsort(time.to_numpy(), kind="stable")
    time, numeric = pd.DatetimeIndex(time.to_numpy()[order]), {c: v[order] for c, v in numeric.items()}
    if time.has_duplicates:
        twice = time[time.duplicated()][0]
        raise UserError(f"{path}: timestamp {twice} appears twice; one row per time step{_repeat_note(twice, time)}")
    freq = ROWS if freq == ROWS else check_regular(time, path, freq)
    values = np.stack([numeric[c] for c in targets], 1) if targets else np.zeros((len(time), 0))
    cov = np.stack([numeric[c] for c in covariates], 1) if covariates else np.zeros((len(time), 0))
    for name, block, cols in (("target", values, targets), ("covariate", cov, covariates)):
        nan = np.isnan(block)
        if nan.any() and (name == "covariate" or not allow_nan):
            r, c = np.argwhere(nan)[0]
            raise UserError(f"{path}: {name} column {cols[c]!r} is missing a value at {time[r]}; "
                            "fill it (interpolate) or drop that series; covariates must be complete"
                            if name == "covariate" else
                            f"{path}: target column {cols[c]!r} is missing a value at {time[r]}; "
                            "fill it, or train with data.allow_missing=true so the model reads a mask")
    return SeriesTable(time, values, cov, list(targets), list(covariates), freq)


def spoken(step: pd.Timedelta) -> str:
    """A step in words ("1 hour", "30 minutes", "1 day") for messages; pandas' codes ("h", "30min") are not."""
    if step.total_seconds() != int(step.total_seconds()):
        return str(step)
    seconds = int(step.total_seconds())
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return str(step)


def check_regular(time: pd.DatetimeIndex, path, freq: str | None = None) -> str:
    """The step between rows must be constant: windows assume it. Name the first gap or irregular step."""
    if freq is None and len(time) < 3:   # the step is inferred from the data
        raise UserError(f"{path}: only {len(time)} timestamps; need a regular series of many steps")
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq)) if freq else pd.Series(time).diff().mode().iloc[0]
    diffs = pd.Series(time).diff().iloc[1:]
    bad = diffs != step
    every = pd.tseries.frequencies.to_offset(step).freqstr
    own = diffs.mode().iloc[0] if len(diffs) else step
    if freq and len(diffs) >= 10 and bad.mean() > 0.5 and own != step:   # most steps differ: another rate
        raise UserError(f"{path}: the series steps every {spoken(own)} but the model was trained on steps of "
                        f"{spoken(step)}; resample it to {spoken(step)} (e.g. pandas .resample('{every}').mean()) or "
                        "train a model on data like yours")
    if bad.any():
        i = int(np.argmax(bad.to_numpy())) + 1
        gap = diffs.iloc[i - 1]
        what = "missing timestamp(s)" if gap > step and gap % step == pd.Timedelta(0) else "an irregular step"
        dst = f" ({DST_NOTE})" if gap - step == pd.Timedelta(hours=1) and _dst_night(time[i - 1], step) else ""
        raise UserError(f"{path}: {what} between {time[i - 1]} and {time[i]} (the series steps every {spoken(step)}); "
                        f"reindex to a regular grid and fill the gaps{dst}")
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
