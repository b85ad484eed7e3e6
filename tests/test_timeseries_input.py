"""Bad prediction inputs of both timeseries tasks, checked from run metadata alone (no model): each is refused
with its line/row and column named, or marked with a status the model's output carries (issue 11: non-finite
numbers, time zones, bad dates, covariates that disagree, .ts decoding, unknown labels, series longer than the
encoder). The end-to-end versions (exit code, nothing written) are the tasks' `bad_inputs` in
tests/test_bad_input.py."""
import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from domains.timeseries import classify as CL
from domains.timeseries.classify_input import TsReader, _where, statuses
from domains.timeseries.forecast_input import ForecastReader, out_of_range, read_new_series

META = {"kind": "forecast", "targets": ["load", "temp"], "covariates": ["holiday"], "calendar": ["hour"],
        "freq": "h", "time_column": "date", "lookback": 24, "horizon": 6, "allow_missing": False,
        "scaler": {"mean": [10.0, 1.0], "std": [5.0, 1.0]}, "covariate_scaler": {"mean": [0.1], "std": [0.3]}}
N, FUTURE = 30, 6   # observed rows, future covariate rows


def _frame() -> pd.DataFrame:
    t = pd.date_range("2024-01-01", periods=N + FUTURE, freq="h")
    return pd.DataFrame({"date": t.strftime("%Y-%m-%d %H:%M:%S"),
                         "load": np.r_[np.arange(N, dtype=float), [np.nan] * FUTURE],
                         "temp": np.r_[np.ones(N), [np.nan] * FUTURE], "holiday": 0.0}).astype(object)


def _set(frame: pd.DataFrame, row: int, col: str, value) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[row, col] = value
    return frame


def _csv(tmp_path, frame: pd.DataFrame, name="new.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _long(frame: pd.DataFrame) -> pd.DataFrame:
    """The wide frame in long format: every load row, then every temp row (future rows carry the covariate
    under load only). Row i of the frame is line i + 2 of its CSV."""
    hist, fut = frame.iloc[:N], frame.iloc[N:]
    return pd.concat([hist.assign(unique_id=s, y=hist[s]) for s in ("load", "temp")]
                     + [fut.assign(unique_id="load", y="")], ignore_index=True)[["unique_id", "date", "y", "holiday"]] \
        .rename(columns={"date": "ds"})


# -- non-finite numbers: refused with line and column, in validate (ForecastReader.check) and predict ------------
@pytest.mark.parametrize(("row", "col", "value"), [
    (10, "load", "inf"),            # in the lookback
    (N - 1, "temp", "-inf"),        # in the last observed row
    (N + 3, "holiday", "inf"),      # in a known-future covariate
    (4, "load", "Infinity"),
])
def test_non_finite_values_are_refused_with_line_and_column(tmp_path, row, col, value):
    path = _csv(tmp_path, _set(_frame(), row, col, value))
    with pytest.raises(UserError) as err:
        ForecastReader(META).check(path)
    assert f"line {row + 2}, column '{col}'" in str(err.value) and "is not finite" in str(err.value)


def test_non_finite_in_long_format_names_the_file_line(tmp_path):
    frame = _long(_frame())
    frame.loc[N + 5, "y"] = "-inf"                 # temp's sixth row: line N + 7
    with pytest.raises(UserError, match=f"line {N + 7}, column 'y': -inf is not finite"):
        read_new_series(_csv(tmp_path, frame), META)


def test_non_finite_in_parquet_names_the_row(tmp_path):
    frame = _set(_frame(), 12, "temp", np.inf).astype({"load": float, "temp": float, "holiday": float})
    path = tmp_path / "new.parquet"
    frame.to_parquet(path)
    with pytest.raises(UserError, match="row 13, column 'temp': inf is not finite"):
        read_new_series(path, META)


@pytest.mark.parametrize(("row", "col", "what"), [(N - 3, "load", "series 'load'"),
                                                  (N + 2, "holiday", "covariate 'holiday'")])
def test_a_value_far_outside_training_is_out_of_range(tmp_path, row, col, what):
    ok = read_new_series(_csv(tmp_path, _frame()), META)
    assert out_of_range(META, ok) is None
    far = read_new_series(_csv(tmp_path, _set(_frame(), row, col, "1e300")), META)
    why = out_of_range(META, far)
    stamp = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=row)
    assert why is not None and why.startswith(f"{what} at {stamp}: 1e+300")


# -- timestamps ---------------------------------------------------------------------------------------------
def test_a_bad_date_is_named_by_its_line_in_long_format(tmp_path):
    frame = _long(_frame())
    frame.loc[N + 12, "ds"] = "2024-13-45 00:00:00"   # a temp row: in the pivoted table it would be elsewhere
    with pytest.raises(UserError, match=f"line {N + 14}: ds='2024-13-45 00:00:00' is not a timestamp"):
        read_new_series(_csv(tmp_path, frame), META)


def test_timestamp_messages_name_the_likely_cause(tmp_path):
    """Another sampling rate, day-first dates and a daylight-saving night each get their own explanation
    (before: "an irregular step" or "not a timestamp" without a why)."""
    quarter = _frame().assign(date=pd.date_range("2024-01-01", periods=N + FUTURE, freq="15min")
                              .strftime("%Y-%m-%d %H:%M"))
    with pytest.raises(UserError, match="steps every 15 minutes but the model was trained on steps of 1 hour"):
        read_new_series(_csv(tmp_path, quarter), META)
    day_first = _frame().assign(date=pd.date_range("2024-01-10", periods=N + FUTURE, freq="D")
                                .strftime("%d/%m/%Y"))
    with pytest.raises(UserError, match="look day-first .* YYYY-MM-DD"):
        read_new_series(_csv(tmp_path, day_first), META)
    autumn = _frame().assign(date=pd.date_range("2024-10-26 20:00", periods=N + FUTURE, freq="h")
                             .strftime("%Y-%m-%d %H:%M"))
    autumn.loc[7, "date"] = autumn.loc[6, "date"]              # 02:00 twice: the clock went back
    with pytest.raises(UserError, match="appears twice.*daylight saving"):
        read_new_series(_csv(tmp_path, autumn), META)
    spring = _frame().assign(date=pd.date_range("2024-03-30 20:00", periods=N + FUTURE, freq="h")
                             .strftime("%Y-%m-%d %H:%M"))
    spring = spring.drop(index=6).reset_index(drop=True)       # 02:00 never happened
    with pytest.raises(UserError, match="missing timestamp.*daylight saving"):
        read_new_series(_csv(tmp_path, spring), META)
    early = _frame().assign(date=pd.date_range("2024-01-01", periods=N + FUTURE, freq="8h")
                            .strftime("%d/%m/%Y %H:%M"))                # every day <= 12: parses month-first
    with pytest.raises(UserError, match="ambiguous; read month-first .* irregular, read day-first .* YYYY-MM-DD"):
        read_new_series(_csv(tmp_path, early), META)
    long = _long(autumn.assign(date=pd.date_range("2024-10-26 20:00", periods=N + FUTURE, freq="h")
                               .strftime("%Y-%m-%d %H:%M")))
    long.loc[7, "ds"] = long.loc[6, "ds"]
    with pytest.raises(UserError, match="twice; keep one row per series and time.*daylight saving"):
        read_new_series(_csv(tmp_path, long), META)
    short = _frame().iloc[[0, 2, 4]]                             # too short to call it another rate
    with pytest.raises(UserError, match="missing timestamp"):
        read_new_series(_csv(tmp_path, short), META)
    semi = tmp_path / "semi.csv"
    _frame().to_csv(semi, index=False, sep=";")
    with pytest.raises(UserError, match="looks ';'-separated"):
        read_new_series(semi, META)


def test_utc_offsets_in_a_csv_are_a_clear_error(tmp_path):
    frame = _frame().assign(date=lambda f: f.date + "+01:00")
    with pytest.raises(UserError, match="line 2: date='2024-01-01 00:00:00\\+01:00' carries a time zone"):
        ForecastReader(META).check(_csv(tmp_path, frame))


def test_time_zone_aware_parquet_is_a_clear_error(tmp_path):
    frame = _frame().astype({"load": float, "temp": float, "holiday": float})
    frame["date"] = pd.to_datetime(frame.date).dt.tz_localize("Australia/Melbourne")
    path = tmp_path / "new.parquet"
    frame.to_parquet(path)
    with pytest.raises(UserError, match="time-zone-aware timestamps"):
        ForecastReader(META).check(path)


# -- long format: covariates, future rows ------------------------------------------------------------------
def test_series_that_disagree_on_a_covariate_are_refused(tmp_path):
    frame = _long(_frame())
    frame.loc[N + 4, "holiday"] = 1.0                 # temp says holiday at 04:00, load says not
    with pytest.raises(UserError, match="at 2024-01-01 04:00:00 the series disagree on covariate 'holiday' "
                                        r"\(load: 0, temp: 1\)"):
        read_new_series(_csv(tmp_path, frame), META)


def test_a_target_in_a_future_row_is_named_as_such(tmp_path):
    frame = _long(_frame())
    frame.loc[2 * N, "y"] = 12.5                      # load given at the first future step, temp not
    with pytest.raises(UserError, match=r"\['load'\] has a value at 2024-01-02 06:00:00, after the last value "
                                        r"of \['temp'\]"):
        read_new_series(_csv(tmp_path, frame), META)


# -- .ts files to classify -----------------------------------------------------------------------------------
CLASSIFY = {"dims": 2, "classes": ["a", "b"], "mean": [0.0, 0.0], "std": [1.0, 1.0], "encoder": {"max_len": 8}}
HEADER = "@problemName toy\n@dimensions 2\n@equalLength false\n"


def _ts(tmp_path, lines: list[str], labels="false"):
    path = tmp_path / "new.ts"
    path.write_text(HEADER + f"@classLabel {labels}\n@data\n" + "\n".join(lines) + "\n")
    return path


def test_ts_random_bytes_are_a_decoding_error_naming_the_file(tmp_path):
    path = tmp_path / "noise.ts"
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(UserError, match="noise.ts: not UTF-8"):
        TsReader(CLASSIFY).check(path)


def test_ts_series_longer_than_max_len_is_refused_before_a_model_loads(tmp_path):
    path = _ts(tmp_path, ["1,2,3:4,5,6", ",".join(["0.5"] * 9) + ":" + ",".join(["0.5"] * 9)])
    with pytest.raises(UserError, match="line 7 \\(series 2\\) has 9 time steps; the model reads at most 8"):
        TsReader(CLASSIFY).check(path)


def test_ts_statuses_for_values_and_labels_the_model_cannot_judge(tmp_path):
    path = _ts(tmp_path, ["1,2:3,4:a", "1,inf:3,4:b", "-inf,2:3,4:a", "1,1e300:3,4:b", "?,?:?,?:a", "1,2:3,4:z"],
               labels="true a b z")
    ts = TsReader(CLASSIFY).read(path)
    assert statuses(CLASSIFY, ts.series, ts.labels) == ["ok", "non_finite", "non_finite", "out_of_range",
                                                        "no_values", "unknown_label"]
    assert _where(CLASSIFY, ts.series[1], "non_finite") == "dimension 1, step 2: inf"   # logged with line 7
    assert _where(CLASSIFY, ts.series[3], "out_of_range") == "dimension 1, step 2: 1e+300"
    assert ts.lines[1] == 7


def test_ts_training_files_refuse_inf(tmp_path):
    path = tmp_path / "x_TRAIN.ts"
    path.write_text(HEADER + "@classLabel true a b\n@data\n1,2:3,4:a\n1,inf:3,4:b\n")
    with pytest.raises(UserError, match="line 7: a value is not finite"):
        CL._training_file(path)



def test_ts_class_label_header_that_disagrees_with_the_lines(tmp_path):
    path = _ts(tmp_path, ["1,2:3,4", "5,6:7,8"], labels="true a b")            # no label fields
    with pytest.raises(UserError, match="has 1 dimensions; the model was trained on 2 .*'@classLabel false'"):
        TsReader(CLASSIFY).check(path)
    path = _ts(tmp_path, ["1,2:3,4:a", "5,6:7,8:b"], labels="false")           # labels after all
    with pytest.raises(UserError, match="line 6: .*'@classLabel true <labels>'"):
        TsReader(CLASSIFY).check(path)
    path = _ts(tmp_path, ["1,2:3,4:1", "5,6:7,8:2"], labels="false")           # numeric labels (UEA's usual)
    with pytest.raises(UserError, match="different lengths .*'@classLabel true <labels>'"):
        TsReader(CLASSIFY).check(path)


def test_iso_timestamps_in_another_precision_are_read():
    """One `2023-01-21 20:00` among `...:00:00` stamps is the same kind of ISO 8601 timestamp, not a bad cell."""
    from domains.timeseries.data import parse_times
    values = pd.Series(["2023-01-21 18:00:00", "2023-01-21 19:00:00", "2023-01-21 20:00", "2023-01-21 21:00:00"])
    got = parse_times(values, "x.csv", "date")
    assert list(got.diff().dropna().unique()) == [pd.Timedelta(hours=1)]
    with pytest.raises(UserError, match="'garbage' is not a timestamp"):
        parse_times(pd.Series(["2023-01-21 18:00:00", "garbage"]), "x.csv", "date")


def test_validate_names_columns_your_file_lacks(tmp_path, run_cli):
    """Like molecules: the config's column names are checked against the header before any preparing."""
    (tmp_path / "wide.csv").write_text("timestamp,load,temp,holiday\n2012-01-01 00:00,1,2,0\n")
    code, _, err = run_cli("validate", "-d", "timeseries", "--set", "data.dataset=csv", "--set",
                           f"data.path={tmp_path / 'wide.csv'}", "--set", "data.time_column=timestmp",
                           "--set", "data.covariates=[holliday]", "--set", "data.targets=[load]")
    assert code == 2 and "no column 'timestmp' (data.time_column)" in err and "no column 'holliday'" in err
    assert "'load'" not in err
    (tmp_path / "long.csv").write_text("unique_id,ds,y\nA,2012-01-01,1\n")
    code, out, err = run_cli("validate", "-d", "timeseries", "--set", "data.dataset=csv", "--set",
                             f"data.path={tmp_path / 'long.csv'}", "--set", "data.format=long")
    assert code == 0, err
    code, _, err = run_cli("validate", "-d", "timeseries", "--set", "data.dataset=csv", "--set",
                           f"data.path={tmp_path / 'long.csv'}", "--set", "data.format=long",
                           "--set", "data.value_column=v")
    assert code == 2 and "no column 'v' (data.value_column)" in err


def test_predict_reads_a_renamed_time_column_from_the_command():
    """--set data.time_column=time at predict names the new file's time column (it was called a setting that
    shapes the model, ignored, and the file refused)."""
    from core.domain import get_domain
    task = get_domain("timeseries").task("forecast")
    assert "data.time_column" in task.prediction_settings
    assert task.reader(META).meta["time_column"] == "date"          # the training file's name by default
    task.prediction_config = get_domain("timeseries").config(None, ["data.time_column=time"])
    try:
        assert task.reader(META).meta["time_column"] == "time"
    finally:
        task.prediction_config = None


def test_steps_in_words():
    from domains.timeseries.data import spoken
    assert [spoken(pd.Timedelta(x)) for x in ("1h", "15min", "1D", "7D", "1.5s")] == \
        ["1 hour", "15 minutes", "1 day", "1 week", "0 days 00:00:01.500000"]
