"""Smoke test of benchmarks/molecules.py on tiny settings (no chemprop): rows written with the documented
names and fields, model and baselines on the same split, a throughput row."""
import json

import pytest

from benchmarks import molecules as bench
from benchmarks.common import ROW_KEYS


def test_benchmark_smoke(tmp_path):
    rows_path = tmp_path / "rows.json"
    bench.main(["--tiny", "--init", "", "--replicates", "0", "--skip-solubility", "--throughput", "20",
                "--threads", "1", "--jobs", "1", "--out", str(tmp_path / "work"), "--rows", str(rows_path)])
    rows = json.loads(rows_path.read_text())
    assert rows and all(tuple(r)[:len(ROW_KEYS)] == ROW_KEYS for r in rows)
    accuracy = [r for r in rows if r["task"] == "regression-expt"]
    assert {r["dataset"] for r in accuracy} == {"freesolv"}
    assert {r["split"] for r in accuracy} == {"scaffold_balanced-0"}
    assert {"sciformer", "mean", "rf-rdkit2d", "rf-morgan"} <= {r["method"] for r in accuracy}
    assert {r["metric"] for r in accuracy} == {"rmse", "mae", "r2"}
    speed = [r for r in rows if r["task"] == "predict-throughput"]
    assert [(r["method"], r["metric"], r["threads"], r["split"]) for r in speed] == \
        [("sciformer", "molecules_per_s", 1, "20-molecules"), ("sciformer-bf16", "molecules_per_s", 1, "20-molecules"),
         ("sciformer-bf16", "max_abs_diff_vs_fp32", 1, "20-molecules"),
         ("sciformer-bf16", "mean_abs_diff_vs_fp32", 1, "20-molecules")]
    assert speed[0]["value"] > 0 and speed[1]["value"] > 0 and 0 <= speed[3]["value"] <= speed[2]["value"]
    rmse = {r["method"]: r["value"] for r in accuracy if r["metric"] == "rmse"}
    assert rmse["sciformer-bf16"] == pytest.approx(rmse["sciformer"], rel=0.05)   # the same model, bf16 rounding


def test_paired_differences_and_summary():
    rows = [{"task": "regression-expt", "dataset": "freesolv", "split": f"scaffold_balanced-{k}", "method": m,
             "metric": "rmse", "value": v}
            for k, (a, b) in enumerate([(1.0, 1.5), (2.0, 2.1), (1.5, 1.6)])
            for m, v in (("sciformer", a), ("chemprop-2.3.1", b))]
    diff = {r["split"]: r["value"] for r in bench.paired_differences(rows)}
    assert diff["paired-mean"] == pytest.approx(-0.2333333, abs=1e-6)
    assert diff["paired-std"] == pytest.approx(0.2309401, abs=1e-6)  # diffs -0.5, -0.1, -0.1
    summary = {(r["method"], r["split"]): r["value"] for r in bench.summarize(rows)}
    assert summary[("sciformer", "mean")] == pytest.approx(1.5, abs=1e-12)
