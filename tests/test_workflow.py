"""The Snakemake pipeline: every target dry-runs (default, test and slurm profiles), the test profile runs every
domain of workflows/config.test.yaml for real (metrics with baselines, a prediction output set, a report), and a
new domain joins the workflow with one line of config. Runs in a copy of the repository so the checkout's
results/ is never touched."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DEFAULT_DOMAINS = list(yaml.safe_load((ROOT / "workflows/config.yaml").read_text())["domains"])
TEST_CONFIG = yaml.safe_load((ROOT / "workflows/config.test.yaml").read_text())
TARGETS = ["all", *DEFAULT_DOMAINS]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    dst = tmp_path_factory.mktemp("workflow")
    for name in ("Snakefile", "workflows", "profiles", "data"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    return dst


def snakemake(workdir, *args, check=True, env=None):
    full_env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                "HOME": str(workdir), **(env or {})}
    done = subprocess.run([*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, env=full_env)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.parametrize("profile", ["default", "test", "slurm", "slurm-local"])
def test_dry_run(workdir, profile):
    out = snakemake(workdir, "-n", "--workflow-profile", f"profiles/{profile}", *TARGETS)
    assert "dry-run" in out.stdout + out.stderr


def test_rules_have_log_and_benchmark():
    text = "".join(p.read_text() for p in (ROOT / "workflows").glob("*.smk"))
    rules = [chunk for chunk in text.split("\nrule ")[1:] if "shell:" in chunk]
    assert len(rules) >= 6 and all("log:" in r and "benchmark:" in r for r in rules)


def test_invalid_workflow_config_is_rejected(workdir):
    out = snakemake(workdir, "-n", "molecules", "--config", "domains={'molecules': {'set': 5}}", check=False)
    assert out.returncode != 0 and "set" in out.stdout + out.stderr


def _check_run(res: Path, run: str, settings: dict) -> None:
    rows = json.loads((res / run / "metrics.json").read_text())["rows"]
    methods = {r["method"] for r in rows}
    assert any(m.startswith("sciformer") for m in methods) and len(methods) >= 2, methods
    assert (res / run / "report" / "metrics.html").exists()
    assert (res / run / "benchmarks" / "train.tsv").exists() and (res / run / "logs" / "evaluate.log").exists()
    if (settings or {}).get("predict"):
        outputs = [p for p in (res / run / "prediction").iterdir()]
        metas = [p for p in outputs if p.name.endswith(".meta.json") or p.name == "meta.json"] + \
                [p / "meta.json" for p in outputs if p.is_dir() and (p / "meta.json").exists()]
        assert metas, f"{run}: no prediction output set"
        meta = json.loads(metas[0].read_text())
        assert meta["input_sha256"] and meta["rows_in"] > 0 and meta["versions"]["torch"]


@pytest.mark.slow
@pytest.mark.parametrize("domain", list(TEST_CONFIG["domains"]))
def test_test_profile_runs_end_to_end(workdir, domain):
    snakemake(workdir, "-c2", "--workflow-profile", "profiles/test", domain)
    for run, settings in (TEST_CONFIG["domains"][domain] or {}).get("runs", {}).items():
        _check_run(workdir / "results" / domain, run, settings)


@pytest.mark.slow
def test_report_collects_every_domains_figures(workdir):
    domains = list(TEST_CONFIG["domains"])
    snakemake(workdir, "-c2", "--workflow-profile", "profiles/test", *domains)
    snakemake(workdir, "--workflow-profile", "profiles/test", *domains, "--report", "report.html")
    assert (workdir / "report.html").stat().st_size > 10_000


@pytest.mark.slow
def test_a_new_domain_is_one_line_of_workflow_config(workdir, tmp_path):
    """The tests' example domain (a folder found through SCIFORMER_DOMAIN_PATH) runs every task through the
    generic rules with one line of config and nothing else touched."""
    extra = tmp_path / "one_line.yaml"
    extra.write_text("domains: {tiny: {}}\n")   # <- the one line
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**TEST_CONFIG, "domains": {**yaml.safe_load(extra.read_text())["domains"]}}))
    env = {"SCIFORMER_DOMAIN_PATH": str(ROOT / "tests" / "example_domains")}
    snakemake(workdir, "-c2", f"--configfile={config}", "tiny", env=env)
    for run in ("mean", "smooth"):
        _check_run(workdir / "results" / "tiny", run, {})


def test_a_run_can_train_each_member_with_ddp(workdir, tmp_path):
    """`nproc: N` in a run gives its train rule N threads and `train --nproc N` (DistributedDataParallel per
    member); without it the members train side by side (`-j`)."""
    config = tmp_path / "nproc.yaml"
    config.write_text(yaml.safe_dump({**TEST_CONFIG, "domains": {"timeseries": {"runs": {
        "forecast": {"nproc": 3}, "classify": {"set": ["data.dataset=japanesevowels"]}}}}}))
    out = snakemake(workdir, "-n", "-p", "-c4", f"--configfile={config}", "timeseries").stdout
    train = [line for line in out.splitlines() if " train -d timeseries " in line]
    assert len(train) == 2, out[-3000:]
    forecast, = [line for line in train if "/forecast/" in line]
    classify, = [line for line in train if "/classify/" in line]
    assert "--nproc 3" in forecast and " -j " not in forecast
    assert "-j 2" in classify and "--nproc" not in classify     # classify.train.ensemble: 3 -> 2 at a time


def test_one_member_runs_ask_for_one_core(workdir, tmp_path):
    """A run whose resolved config trains one member gets one thread, so two such runs train side by side on
    2 cores (each used to ask for 2 and wait for the other)."""
    config = tmp_path / "members.yaml"
    config.write_text(yaml.safe_dump({**TEST_CONFIG, "domains": {"timeseries": {"runs": {
        "forecast": {}, "classify": {"set": ["data.dataset=japanesevowels", "classify.train.ensemble=1"]}}}}}))
    out = snakemake(workdir, "-n", "-c2", f"--configfile={config}", "timeseries").stdout
    threads = {}
    for block in out.split("\nrule ")[1:] + out.split("\nlocalrule ")[1:]:
        if block.startswith("train:"):
            run = "forecast" if "/forecast/" in block else "classify"
            found = re.search(r"^\s+threads: (\d+)", block, re.M)
            threads[run] = int(found.group(1)) if found else 1
    assert threads == {"forecast": 1, "classify": 1}, out[-3000:]


def test_a_runs_config_file_and_data_files_are_inputs_of_prepare(workdir, tmp_path):
    """Editing the run's config file or the CSV it names reruns the run: both are inputs of prepare (params
    alone only carry their names, so a changed file used to leave the old results standing)."""
    data = tmp_path / "mine.csv"
    data.write_text("smiles,y,split\nCCO,1.0,train\n")
    settings = tmp_path / "mine.yaml"
    settings.write_text(yaml.safe_dump({"data": {"dataset": "csv", "path": str(data), "targets": ["y"],
                                                 "split": "column"}}))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**TEST_CONFIG, "domains": {"molecules": {"config": str(settings)}}}))
    out = snakemake(workdir, "-n", "-c1", f"--configfile={config}", "molecules").stdout
    block = next(b for b in out.split("\nrule ")[1:] + out.split("\nlocalrule ")[1:] if b.startswith("prepare:"))
    inputs = re.search(r"^\s+input: (.*)$", block, re.M)
    assert inputs and str(settings) in inputs.group(1) and str(data) in inputs.group(1), block


def test_workflow_config_typos_fail_every_target_with_their_names(workdir, tmp_path):
    """An unknown domain or task, or a missing config file, stops the workflow when it loads, naming the key
    (was: "No rule to produce molecules", or a dry run that passed); the `sciformer` entry has a default."""
    config = tmp_path / "typos.yaml"
    config.write_text(yaml.safe_dump({"domains": {"molecule": {}, "molecules": {
        "config": "nowhere.yaml", "runs": {"mine": {"task": "property"}}}}}))
    out = snakemake(workdir, "-n", "molecules", f"--configfile={config}", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "domains.molecule: unknown domain 'molecule'" in text, text[-2000:]
    assert "domains.molecules.runs.mine: task 'property' is not a task of molecules" in text
    assert "domains.molecules.config: nowhere.yaml not found" in text
    good = tmp_path / "no_key.yaml"          # no `sciformer:` entry: the default command
    good.write_text(yaml.safe_dump({"domains": {"molecules": {"runs": {"properties": {}}}}}))
    out = snakemake(workdir, "-n", "molecules", f"--configfile={good}")
    assert "dry-run" in out.stdout + out.stderr


def _jobs(dry_run_output: str) -> set[str]:
    """The rule names of a dry run's "Job stats" table (between its header and the `total` row)."""
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", table, re.M)}


def test_retuning_training_reruns_train_not_prepare(workdir, tmp_path):
    """A run whose `set:` changes only train.* reruns train and what follows, not prepare (every rule
    got every setting, so Snakemake's params trigger re-prepared the data); a data setting still reruns it."""
    runs = {"rerun": {"task": "forecast"}}
    base = {**TEST_CONFIG, "domains": {"timeseries": {**TEST_CONFIG["domains"]["timeseries"], "runs": runs}}}
    settings = base["domains"]["timeseries"]["set"]

    def dry_run(extra: list[str]) -> set[str]:
        config = tmp_path / "rerun.yaml"
        config.write_text(yaml.safe_dump({**base, "domains": {"timeseries": {"set": [*settings, *extra],
                                                                             "runs": runs}}}))
        out = snakemake(workdir, "-n", "-c1", f"--configfile={config}", "results/timeseries/rerun/metrics.json")
        return _jobs(out.stdout)

    prepared = "results/timeseries/rerun/prepared/resolved_config.json"
    config = tmp_path / "rerun.yaml"
    config.write_text(yaml.safe_dump(base))
    snakemake(workdir, "-c1", f"--configfile={config}", prepared)
    assert dry_run([]) == {"train", "evaluate"}
    assert dry_run(["train.lr=0.002", "train.epochs=2"]) == {"train", "evaluate"}
    assert dry_run(["data.max_rows=1500"]) == {"prepare", "train", "evaluate"}
