"""Two domains of the test profile (molecules, with its pretraining stage, and timeseries' forecast run) on a real
SLURM cluster (env/slurm-local.sh) through snakemake-executor-plugin-slurm (profiles/slurm-local): every job a
real sbatch job that gets the CPUs, memory and time limit Snakemake declared for it, the node never
oversubscribed, the results identical to a local run's; a job killed with scancel mid-run is reported, and the
rerun runs only the jobs that had not completed.

Needs a running cluster: `sudo bash env/slurm-local.sh`. With CI=true, as root on a machine with apt, the test
starts it itself. Otherwise it skips (`pytest -rs` prints why)."""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("molecules", "timeseries")
# The two cheapest domains of the test profile: molecules' whole pipeline (pretraining stage included) and
# one timeseries run; the other timeseries run (classify) would add five jobs and nothing new to check.
TARGETS = ["molecules", "results/timeseries/forecast/report", "results/timeseries/forecast/prediction"]
RUN_TIMEOUT_S = 30 * 60   # one pipeline run: 3-6 min measured on 2 cores shared with other work


def slurm(*args, check=True):
    """stdout of a SLURM client command (sinfo, squeue, sacct, scancel); a controller that hangs fails the test."""
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=120).stdout


def node_ready():
    """True when the local cluster's partition has a node that accepts jobs."""
    if not shutil.which("sinfo"):
        return False
    states = slurm("sinfo", "-h", "-p", "cpu", "-o", "%T", check=False).split()
    return bool(set(states) & {"idle", "mixed", "allocated"})


@pytest.fixture(scope="module")
def cluster():
    if node_ready():
        return
    missing = [why for why, ok in [("CI is not 'true'", os.environ.get("CI") == "true"),
                                   ("not root", os.geteuid() == 0), ("no apt-get", shutil.which("apt-get"))] if not ok]
    if missing:
        pytest.skip(f"no SLURM cluster is up, and the test starts one only with CI=true as root with apt "
                    f"({', '.join(missing)}): start one with `sudo bash env/slurm-local.sh`")
    t0 = time.monotonic()
    subprocess.run(["bash", str(ROOT / "env" / "slurm-local.sh"), "start"], check=True, timeout=900)
    print(f"SLURM cluster started in {time.monotonic() - t0:.0f} s")


def copy_workflow(dst):
    dst.mkdir()
    for name in ("Snakefile", "workflows", "profiles", "data"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    return dst


def snakemake_command(workdir, profile, log):
    """Popen of `snakemake --workflow-profile profiles/PROFILE TARGETS`, output to LOG."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(workdir),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if "PYTHONPATH" in os.environ:   # jobs import the same code as this process (e.g. a checkout not installed)
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", f"profiles/{profile}", *TARGETS]
    if profile == "test":
        cmd.insert(3, "-c2")
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def finish(proc, log_path):
    """Exit code of a Snakemake run; one that outlives RUN_TIMEOUT_S is killed and fails the test."""
    try:
        return proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as timeout:
        proc.kill()
        tail = log_path.read_text()[-3000:]
        raise AssertionError(f"Snakemake still running after {RUN_TIMEOUT_S} s:\n{tail}") from timeout


def run(workdir, profile, name):
    """Run to the end; returns (exit code, output, SLURM run id or None)."""
    path = workdir / f"{name}.log"
    with open(path, "w") as log:
        code = finish(snakemake_command(workdir, profile, log), path)
    return code, path.read_text(), run_id(path.read_text())


def run_id(output):
    found = re.search(r"SLURM run ID: (\S+)", output)
    return found and found.group(1)


def sacct(run_ids):
    """Every job and step of these Snakemake runs, from the accounting database."""
    fields = "JobIDRaw,JobID,Comment,State,AllocCPUS,ReqMem,Timelimit,Start,End,MaxRSS"
    out = slurm("sacct", "-P", "-n", "--name", ",".join(run_ids), "--starttime", "now-1day", "-o", fields)
    rows = [dict(zip(fields.split(","), line.split("|"))) for line in out.splitlines() if line]
    jobs = {r["JobID"]: {**r, "steps": []} for r in rows if "." not in r["JobID"]}
    for r in rows:   # steps (batch, 0, ...) are listed under their job; sacct names only the job
        if "." in r["JobID"]:
            jobs[r["JobID"].split(".")[0]]["steps"].append(r)
    return jobs


def rule_of(comment):
    """The plugin's --comment is rule_<name> or rule_<name>_wildcards_<values>."""
    return re.sub(r"_wildcards_.*$", "", comment).removeprefix("rule_")


def cancel_training_mid_run(workdir, proc, log_path):
    """Wait until the molecules training job's command runs (its srun step exists), then scancel it."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        uuid = run_id(log_path.read_text())
        if uuid:
            out = slurm("squeue", "-h", "--name", uuid, "-o", "%i|%k|%T", check=False)
            for job, comment, state in (line.split("|") for line in out.splitlines()):
                if rule_of(comment) == "train" and "molecules" in comment and state == "RUNNING":
                    if f"{job}.0" in slurm("squeue", "-h", "-s", "-j", job, "-o", "%i", check=False).split():
                        slurm("scancel", job)
                        return job
        time.sleep(1)
    raise AssertionError(f"the molecules training job never ran:\n{log_path.read_text()[-3000:]}")


def declared(workdir, job_id):
    """threads and resources Snakemake declared for a job, from the job's SLURM log (the plugin's logdir)."""
    log = next((workdir / ".snakemake" / "slurm_logs").rglob(f"{job_id}.log")).read_text()
    threads = re.search(r"^\s+threads: (\d+)", log, re.M)   # printed only when more than one
    resources = dict(kv.split("=", 1) for kv in re.search(r"^\s+resources: (.*)$", log, re.M).group(1).split(", "))
    return int(threads.group(1)) if threads else 1, resources


def minutes(limit):
    """sacct's Timelimit ([D-]HH:MM:SS) in minutes."""
    days, _, clock = limit.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + s / 60


def mb(value):
    """sacct memory (e.g. 2000M, 512344K, 1.5G) in MB."""
    if not value:
        return 0.0
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}
    return float(value[:-1]) * scale[value[-1]] if value[-1] in scale else float(value) / 2 ** 20


def completed_outputs(workdir):
    """Outputs Snakemake recorded as complete (.snakemake/metadata) -> (mtime, rule)."""
    records = {}
    for f in (workdir / ".snakemake" / "metadata").iterdir():
        meta = json.loads(f.read_text())
        path = workdir / base64.b64decode(f.name).decode()
        if not meta.get("incomplete") and path.exists():
            records[path] = (path.stat().st_mtime_ns, meta["rule"])
    return records


def local_jobs(workdir):
    """Jobs of a finished run per rule: one per distinct log file (every shell rule has one)."""
    jobs = set()
    for f in (workdir / ".snakemake" / "metadata").iterdir():
        meta = json.loads(f.read_text())
        jobs.add((meta["rule"], tuple(meta["log"])))
    return Counter(rule for rule, _ in jobs)


def assert_cpus_never_oversubscribed(jobs):
    node_cpus = int(slurm("sinfo", "-h", "-p", "cpu", "-o", "%c").split()[0])
    spans = [(datetime.fromisoformat(j["Start"]), datetime.fromisoformat(j["End"]), int(j["AllocCPUS"]))
             for j in jobs.values() if j["Start"] not in ("", "Unknown", "None") and j["End"] != "Unknown"]
    for t, _, _ in spans:
        busy = sum(cpus for start, end, cpus in spans if start <= t < end)
        assert busy <= node_cpus, f"{busy} CPUs allocated at {t} on a {node_cpus}-CPU node"


def test_pipelines_on_slurm_match_local_and_recover_from_a_cancelled_job(cluster, tmp_path):
    t0 = time.monotonic()
    local, work = copy_workflow(tmp_path / "local"), copy_workflow(tmp_path / "slurm")
    # The local reference runs alongside the first SLURM run: it uses the CPU time the SLURM run spends
    # waiting between status checks, and neither run's results depend on the other's timing.
    local_log, first_log = local / "local.log", work / "slurm-1.log"
    with open(local_log, "w") as llog, open(first_log, "w") as log:
        local_proc = snakemake_command(local, "test", llog)
        # First SLURM run: the molecules training job is killed while its command runs.
        proc = snakemake_command(work, "slurm-local", log)
        try:
            cancelled = cancel_training_mid_run(work, proc, first_log)
            code = finish(proc, first_log)
            local_code = finish(local_proc, local_log)
        finally:   # a failed test leaves nothing running: SIGINT makes Snakemake scancel the jobs it submitted
            for running, how in ((proc, signal.SIGINT), (local_proc, signal.SIGTERM)):
                if running.poll() is None:
                    running.send_signal(how)
                    running.wait(timeout=120)
    assert local_code == 0, local_log.read_text()[-3000:]
    out = first_log.read_text()
    assert code != 0, "Snakemake did not report the cancelled job as a failure"
    assert "Error in rule train" in out and f"SLURM-job '{cancelled}' failed" in out \
        and "CANCELLED" in out, out[-3000:]
    first_id = run_id(out)
    before = completed_outputs(work)
    assert before and not any(rule == "train" and "molecules" in str(p) for p, (_, rule) in before.items())

    # The rerun completes the pipelines and leaves what the first run completed alone.
    code, out, second_id = run(work, "slurm-local", "slurm-2")
    assert code == 0, out[-3000:]
    after = completed_outputs(work)
    changed = [str(p) for p, (mtime, _) in before.items() if after.get(p, (None,))[0] != mtime]
    assert not changed, f"the rerun rewrote outputs the first run had completed: {changed}"

    first, second = sacct([first_id]), sacct([second_id])
    jobs = {**first, **second}
    states = Counter(j["State"].split()[0] for j in jobs.values())
    assert states["CANCELLED"] == 1 and first[cancelled]["State"].startswith("CANCELLED"), states
    first_done = {j["Comment"] for j in first.values() if j["State"] == "COMPLETED"}
    assert first_done and not first_done & {j["Comment"] for j in second.values()}, "the rerun repeated jobs"
    # Every job of the local run ran exactly once as a completed SLURM job.
    done = [j for j in jobs.values() if j["State"] == "COMPLETED"]
    on_slurm = Counter(rule_of(j["Comment"]) for j in done)
    assert on_slurm == local_jobs(local), (on_slurm, local_jobs(local))

    for j in done:   # resources: what Snakemake declared is what SLURM allocated, and the job stayed inside it
        threads, res = declared(work, j["JobIDRaw"])
        assert int(j["AllocCPUS"]) == int(res["cpus_per_task"]) >= threads, (j, res, threads)
        assert mb(j["ReqMem"]) == int(res["mem_mb"]), (j, res)
        assert minutes(j["Timelimit"]) == int(res["runtime"]), (j, res)
        rss = max(mb(s["MaxRSS"]) for s in j["steps"])
        assert 0 < rss <= int(res["mem_mb"]), (j, rss)
        assert any(s["JobID"].endswith(".0") for s in j["steps"]), f"no srun step in job {j['JobID']}"
    assert_cpus_never_oversubscribed(jobs)

    # Same results as the local run, byte for byte (torch on CPU, one thread, fixed seeds): metrics, test-set
    # predictions and the prediction output sets.
    files = sorted(p.relative_to(local) for p in (local / "results").rglob("*") if p.is_file() and (
        p.name in ("metrics.json", "test_predictions.csv") or p.parent.name == "prediction")
        and not p.name.startswith("."))   # .snakemake_timestamp: Snakemake's marker in directory outputs
    assert {f.parts[1] for f in files if f.name == "metrics.json"} == set(DOMAINS), files
    differ = [str(f) for f in files if (local / f).read_bytes() != (work / f).read_bytes()]
    assert not differ, f"SLURM and local runs differ in {differ}"
    print(f"whole test {time.monotonic() - t0:.0f} s; {len(done)} SLURM jobs, {len(files)} files identical")
