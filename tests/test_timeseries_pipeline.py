"""Timeseries end to end on real data (vic_elec, JapaneseVowels) at toy scale: `sciformer predict` on a new
file gives exactly the forecast (and band) that evaluation computes for the same window, so scaling, the
cycle's phase, calendar covariates and the conformal scale agree between the two code paths."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from core.domain import get_domain
from core.runs import load_members
from domains.timeseries import forecast as F

SETS = ["data.max_rows=3000", "forecast.lookback=48", "forecast.horizon=24", "train.max_steps=6",
        "train.progress=false", "encoder.d_model=16", "encoder.n_heads=2", "encoder.n_layers=1", "encoder.d_ff=32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from core.cli import main
    root = tmp_path_factory.mktemp("ts")
    sets = [a for s in SETS for a in ("--set", s)]
    assert main(["-q", "prepare", "-d", "timeseries", "-o", str(root / "prep"), *sets]) == 0
    assert main(["-q", "train", "-d", "timeseries", "-i", str(root / "prep"), "-o", str(root / "run"), *sets]) == 0
    return root


@pytest.mark.slow
@pytest.mark.parametrize("history", ["lookback", "lookback+horizon"])
def test_predict_on_new_file_equals_evaluation_window(trained, run_cli, history):
    members = load_members(get_domain("timeseries").task("forecast"), trained / "run", torch.device("cpu"))
    meta = members[0].metadata["task"]
    p = F.Prepared(trained / "prep", meta)
    inputs = p.inputs(meta)
    lb, h = meta["lookback"], meta["horizon"]
    start = int(p.starts(2, lb, h)[-1])
    expected = F.predict_windows(members, inputs, np.array([start]))[0]
    extra = h if history == "lookback+horizon" else 0
    series = pd.read_parquet(trained / "prep" / "series.parquet").iloc[start - extra: start + lb + h].copy()
    truth = series[meta["targets"]].to_numpy()[-h:]
    series.loc[series.index[-h:], meta["targets"]] = np.nan   # the future: only the holiday flag is known
    series = series.rename(columns={"time": meta["time_column"]})
    new = trained / f"new_{history}.csv"
    series.to_csv(new, index=False)
    out = trained / f"forecast_{history}.csv"
    code, stdout, err = run_cli("-q", "predict", "-d", "timeseries", "-i", new, "-o", out, "--model", trained / "run")
    assert code == 0, err
    got = pd.read_csv(out)
    assert len(got) == h * len(meta["targets"])
    assert pd.Timestamp(got.ds.iloc[0]) == p.time[start + lb]
    for c, name in enumerate(meta["targets"]):
        part = got[got.unique_id == name]
        raw = expected[:, c] * p.scaler.std[c] + p.scaler.mean[c]
        np.testing.assert_allclose(part.y_pred.to_numpy(), raw, rtol=1e-5, atol=1e-4 * p.scaler.std[c])
        assert (part.p10 <= part.p50).all() and (part.p50 <= part.p90).all()
    if history == "lookback+horizon":   # the band matches evaluation's scale (whichever was chosen) for this window
        q = F.quantile_forecasts(members, inputs, expected[None], np.array([start]))
        demand = got[got.unique_id == meta["targets"][0]]
        np.testing.assert_allclose(demand.p90.to_numpy(), q[0.9][0, :, 0] * p.scaler.std[0] + p.scaler.mean[0],
                                   rtol=1e-5, atol=1e-4 * p.scaler.std[0])
    meta_out = json.loads((out.parent / (out.name + ".meta.json")).read_text())
    assert meta_out["rows_out"] == len(got) and np.isfinite(truth).all()


@pytest.mark.slow
def test_classification_on_variable_lengths_beats_chance(tmp_path, run_cli):
    sets = [a for s in ["task=classify", "data.dataset=japanesevowels", "classify.train.epochs=3",
                        "train.progress=false", "encoder.d_model=32", "encoder.n_layers=1", "encoder.d_ff=64"]
            for a in ("--set", s)]
    assert run_cli("-q", "prepare", "-d", "timeseries", "-o", tmp_path / "prep", *sets)[0] == 0
    assert run_cli("-q", "train", "-d", "timeseries", "-i", tmp_path / "prep", "-o", tmp_path / "run", *sets)[0] == 0
    code, out, err = run_cli("-q", "evaluate", "-d", "timeseries", "-i", tmp_path / "prep", "--model",
                             tmp_path / "run", "-o", tmp_path / "m.json", *sets)
    assert code == 0, err
    rows = {(r["method"], r["metric"]): r["value"] for r in json.loads((tmp_path / "m.json").read_text())["rows"]}
    assert rows[("sciformer-transformer", "accuracy")] > 0.5   # 9 classes: chance is ~0.11
    assert rows[("summary-stats-logreg", "accuracy")] > 0.9
    code, out, err = run_cli("-q", "predict", "-d", "timeseries", "-i", "data/timeseries/new_vowels.ts",
                             "-o", tmp_path / "classes.csv", "--model", tmp_path / "run")
    assert code == 0, err
    got = pd.read_csv(tmp_path / "classes.csv")
    assert len(got) == 40 and got.filter(like="p_").sum(axis=1).round(4).eq(1).all()


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["wide", "long"])
def test_own_csv_with_gaps_needs_allow_missing(tmp_path, run_cli, layout):
    """A user's file with missing values: a clear error by default; with data.allow_missing the model reads
    the observed-mask, trains, evaluates and forecasts."""
    from domains.timeseries.sources import load_vic_elec
    frame = load_vic_elec().iloc[:1500].reset_index(drop=True)
    frame.loc[[200, 201, 900], "Demand"] = np.nan
    if layout == "long":
        frame = pd.concat([pd.DataFrame({"unique_id": s, "ds": frame.date, "y": frame[s], "Holiday": frame.Holiday})
                           for s in ("Demand", "Temperature")])
    path = tmp_path / "mine.csv"
    frame.to_csv(path, index=False)
    sets = ["data.dataset=csv", f"data.path={path}", f"data.format={layout}", "data.covariates=[Holiday]",
            "forecast.lookback=48", "forecast.horizon=12", "train.max_steps=3", "train.progress=false",
            "encoder.d_model=16", "encoder.n_heads=2", "encoder.n_layers=1", "encoder.d_ff=32"]
    args = [a for s in sets for a in ("--set", s)]
    code, out, err = run_cli("-q", "prepare", "-d", "timeseries", "-o", tmp_path / "p0", *args)
    assert code == 2 and "'Demand' is missing a value at" in err and "allow_missing" in err
    args += ["--set", "data.allow_missing=true"]
    assert run_cli("-q", "prepare", "-d", "timeseries", "-o", tmp_path / "p", *args)[0] == 0
    assert run_cli("-q", "train", "-d", "timeseries", "-i", tmp_path / "p", "-o", tmp_path / "run", *args)[0] == 0
    code, out, err = run_cli("-q", "evaluate", "-d", "timeseries", "-i", tmp_path / "p", "--model", tmp_path / "run",
                             "-o", tmp_path / "m.json", *args)
    assert code == 0, err
    rows = json.loads((tmp_path / "m.json").read_text())["rows"]
    assert all(np.isfinite(r["value"]) for r in rows)


def test_calibration_keeps_every_scale_and_chooses_on_validation(trained):
    """forecast.conformal_scale=auto: offsets for all three scales, the chosen one the lowest pinball on the
    later validation fold (never a test number)."""
    from domains.timeseries import conformal
    members = load_members(get_domain("timeseries").task("forecast"), trained / "run", torch.device("cpu"))
    cal = members[0].metadata["calibration"]
    assert set(cal["scales"]) == set(conformal.SCALES) and cal["requested"] == "auto"
    scores = cal["selection"]
    assert set(scores) == set(conformal.SCALES)
    assert cal["scale"] == min(scores, key=lambda k: (scores[k]["pinball"], k))
    assert 2 <= cal["fold"]["fit"] and cal["fold"]["fit"] + cal["fold"]["check"] <= cal["windows"]
    assert F.calibration(members)["scale"] == cal["scale"]
