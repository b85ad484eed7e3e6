"""Example inputs of both tasks for the contract test and their bad-input cases (tests/test_bad_input.py).

They are built for the smoke-trained models (`Task.smoke_overrides`): the forecaster reads 48 half-hours of
vic_elec's Demand and Temperature with the Holiday flag and forecasts 24; the classifier knows JapaneseVowels
(12 dimensions, speakers 1-9). Each case is a real mistake a user makes with such a file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.task import BadInput

ROOT = Path(__file__).resolve().parents[2]
VOWELS = ROOT / "data" / "timeseries" / "new_vowels.ts"   # 40 series of JapaneseVowels_TEST without labels
HORIZON = 24                                              # the smoke-trained forecaster's horizon


def forecast_frame() -> pd.DataFrame:
    """The last 200 half-hours of vic_elec in long format: 176 observed rows of both series, and the next 24
    with only their Holiday flag (known ahead). Row i of the frame is line i + 2 of its CSV."""
    from domains.timeseries.sources import load_vic_elec
    full = load_vic_elec().iloc[-200:]
    hist, fut = full.iloc[:-HORIZON], full.iloc[-HORIZON:]
    return pd.concat([pd.DataFrame({"unique_id": s, "ds": hist["date"], "y": hist[s], "Holiday": hist["Holiday"]})
                      for s in ("Demand", "Temperature")]
                     + [pd.DataFrame({"unique_id": "Demand", "ds": fut["date"], "y": np.nan,
                                      "Holiday": fut["Holiday"]})], ignore_index=True).astype({"y": object,
                                                                                              "ds": object})


def forecast_examples(folder: Path) -> tuple[Path, Path, str]:
    frame = forecast_frame()
    good, bad = folder / "new_series.csv", folder / "missing_series.csv"
    frame.to_csv(good, index=False)
    frame[frame.unique_id != "Temperature"].to_csv(bad, index=False)
    return good, bad, "series ['Temperature'] are missing"


def forecast_bad_inputs(folder: Path) -> list[BadInput]:
    base = forecast_frame()
    n_hist = (len(base) - HORIZON) // 2           # rows per series before the future rows
    last_temp, first_future = 2 * n_hist - 1, 2 * n_hist

    def cell(row: int, col: str, value) -> pd.DataFrame:
        f = base.astype({col: object})   # the cell holds text ("inf", "4.2kW") as a user's file would
        f.loc[row, col] = value
        return f

    future_temperature = pd.concat([base, base.iloc[[first_future]].assign(unique_id="Temperature", y=21.5)],
                                   ignore_index=True)
    cases = {   # name: (frame or raw text, message fragment, status)
        "header_only": ("unique_id,ds,y,Holiday\n", "no data rows", None),
        "inf_in_lookback": (cell(n_hist - 5, "y", "inf"), f"line {n_hist - 3}, column 'y': inf is not finite", None),
        "minus_inf_in_last_row": (cell(last_temp, "y", "-inf"), f"line {last_temp + 2}, column 'y': -inf is not "
                                  "finite", None),
        "inf_in_future_covariate": (cell(first_future + 3, "Holiday", "inf"), f"line {first_future + 5}, column "
                                    "'Holiday': inf is not finite", None),
        "value_far_outside_training": (cell(n_hist - 2, "y", "1e300"), "", "out_of_range"),
        "not_a_number": (cell(10, "y", "4.2kW"), "line 12, column 'y': '4.2kW' is not a number", None),
        "bad_date": (cell(300, "ds", "2014-13-45 00:00:00"), "line 302: ds='2014-13-45 00:00:00' is not a "
                     "timestamp", None),
        "time_zone": (base.assign(ds=pd.to_datetime(base.ds).dt.strftime("%Y-%m-%d %H:%M:%S+11:00")),
                      "carries a time zone", None),
        "covariate_disagrees": (cell(n_hist + 7, "Holiday", 1.0 - base.Holiday[n_hist + 7]),
                                "the series disagree on covariate 'Holiday'", None),
        "target_in_future_row": (future_temperature, "after the last value of ['Demand']", None),
        "unknown_series": (cell(0, "unique_id", "Wind"), "series ['Wind'] were not in training", None),
        "too_little_history": (base[base.ds.isin(base.ds.iloc[n_hist - 20: n_hist]) | (base.index >= first_future)],
                               "too little history", None),
        "gap_in_time": (base[base.ds != base.ds.iloc[100]], "missing timestamp(s) between", None),
        "future_rows_missing": (base.iloc[: first_future + 10], f"add exactly {HORIZON} rows", None),
        "extra_field": (None, "fields", None),
    }
    out = []
    for name, (content, message, status) in cases.items():
        path = folder / f"{name}.csv"
        if isinstance(content, pd.DataFrame):
            content.to_csv(path, index=False)
        elif content is not None:
            path.write_text(content)
        out.append(BadInput(name, path, message, status))
    lines = forecast_frame().to_csv(index=False).splitlines()
    lines[40] += ",1"
    (folder / "extra_field.csv").write_text("\n".join(lines) + "\n")
    (folder / "corrupt.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 8)
    out.append(BadInput("corrupt_parquet", folder / "corrupt.parquet", "cannot be read as a table"))
    return out


# -- classification ---------------------------------------------------------------------------------------
def _vowel_lines() -> tuple[list[str], list[str]]:
    """(header lines without @classLabel/@data, series lines) of the shipped new_vowels.ts."""
    lines = VOWELS.read_text().splitlines()
    at = lines.index("@data")
    return [x for x in lines[:at] if not x.lower().startswith("@classlabel")], lines[at + 1:]


def _ts(header: list[str], series: list[str], labels: list[str] | None = None) -> str:
    label_line = "@classLabel " + ("true " + " ".join(sorted(set(labels))) if labels else "false")
    body = [s + (f":{lab}" if labels else "") for s, lab in zip(series, labels or [""] * len(series))]
    return "\n".join([*header, label_line, "@data", *body]) + "\n"


def classify_examples(folder: Path) -> tuple[Path, Path, str]:
    header, series = _vowel_lines()
    good, bad = folder / "new_vowels.ts", folder / "eleven_dims.ts"
    good.write_text(VOWELS.read_text())
    bad.write_text(_ts(header, [s.rsplit(":", 1)[0] for s in series[:3]]))
    return good, bad, "has 11 dimensions; the model was trained on 12"


def classify_bad_inputs(folder: Path) -> list[BadInput]:
    header, series = _vowel_lines()
    first = series[0].split(":")
    n = len(first[0].split(","))

    def with_value(value: str) -> list[str]:   # the first series with one value replaced
        dims = [d.split(",") for d in first]
        dims[3][2] = value
        return [":".join(",".join(d) for d in dims), *series[1:3]]

    long_series = ":".join(",".join(["0.5"] * 2100) for _ in first)
    data_line = len(header) + 3   # the first series' line number (after the header, @classLabel and @data)
    cases = {
        "no_series": (_ts(header, []), "no @data rows found", None),
        "eleven_dimensions": (_ts(header, [s.rsplit(":", 1)[0] for s in series[:2]]),
                              f"line {data_line} (series 1) has 11 dimensions", None),
        "ragged_dimensions": (_ts(header, [series[0].replace(":", ",0.1:", 1)]),
                              "dimensions have different lengths", None),
        "not_a_number": (_ts(header, with_value("1.2.3")), f"line {data_line}: could not convert", None),
        "aeon_timestamps": (_ts(header, ["(2007-01-01 00:00:00,1.5):" + series[0].split(":", 1)[1]]),
                            "values must be numbers or '?'", None),
        "longer_than_max_len": (_ts(header, [long_series]), "2100 time steps; the model reads at most", None),
        "inf_value": (_ts(header, with_value("inf")), "", "non_finite"),
        "value_far_outside_training": (_ts(header, with_value("1e300")), "", "out_of_range"),
        "all_missing": (_ts(header, [":".join(",".join(["?"] * n) for _ in first), *series[1:3]]), "",
                        "no_values"),
        "unknown_label": (_ts(header, series[:3], ["3", "7", "10"]), "", "unknown_label"),
    }
    out = []
    for name, (text, message, status) in cases.items():
        (folder / f"{name}.ts").write_text(text)
        out.append(BadInput(name, folder / f"{name}.ts", message, status))
    (folder / "vowels.csv").write_text("series,value\n1,0.5\n")
    out.append(BadInput("table_instead_of_ts", folder / "vowels.csv", "model reads .ts"))
    return out
