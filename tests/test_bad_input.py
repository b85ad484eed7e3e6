"""The bad-input suite: for every (domain, task), generic cases derived from the task's example input (missing,
empty, corrupt bytes, not UTF-8, wrong suffix, output over input, an interrupted run) and the task's own
`bad_inputs` (header only, wrong columns, non-finite, out of range...). Each asserts the exit code, a message
naming the file/row/field, no traceback, and nothing left behind (no output, no staging folder)."""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from core.domain import domain_names, get_domain
from core.runs import first_meta


def run_info_meta(run):
    return first_meta(run)["task"]

ROOT = Path(__file__).resolve().parents[1]


def _cases():
    out = []
    for d in domain_names():
        for t in get_domain(d).task_names():
            out.append(pytest.param(d, t, id=f"{d}-{t}"))
    return out


CASES = _cases()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke-trained run per (domain, task), shared by the cases."""
    from core.cli import main
    runs = {}

    def get(domain, task):
        if (domain, task) not in runs:
            t = get_domain(domain).task(task)
            folder = tmp_path_factory.mktemp(f"{domain}-{task}")
            sets = [a for o in (*t.smoke_overrides, f"task={task}") for a in ("--set", o)]
            assert main(["-q", "prepare", "-d", domain, "-o", str(folder / "prep"), *sets]) == 0
            init = []
            for stage in t.stages:
                run = folder / f"stage_{stage}"
                assert main(["-q", "train", "-d", domain, "-i", str(folder / "prep"), "-o", str(run),
                             "--stage", stage, *init, *sets]) == 0
                init = ["--init", str(run)]
            runs[(domain, task)] = (t, run)
        return runs[(domain, task)]
    return get


def _predict(run_cli, domain, run, source, out, on_invalid="mark"):
    return run_cli("-q", "predict", "-d", domain, "-i", source, "-o", out, "--model", run, "--on-invalid", on_invalid)


def _nothing_left(folder: Path, out: Path) -> None:
    assert not out.exists(), f"{out} was written"
    left = [p.name for p in folder.iterdir() if ".partial-" in p.name or p.name.endswith(".meta.json")]
    assert not left, f"left behind: {left}"


def _corrupt(good: Path, folder: Path) -> dict[str, Path]:
    """Generic bad variants of a good input file (folders get their own: empty folder)."""
    if good.is_dir():
        empty = folder / "no_files_here"
        empty.mkdir()
        return {"empty": empty}
    suffix = good.suffix
    raw = good.read_bytes()
    out = {"empty": folder / f"empty{suffix}", "random_bytes": folder / f"random{suffix}",
           "wrong_suffix": folder / "input.unsupported", "truncated": folder / f"truncated{suffix}"}
    out["empty"].write_bytes(b"")
    out["random_bytes"].write_bytes(os.urandom(4096))
    out["wrong_suffix"].write_bytes(raw)
    out["truncated"].write_bytes(raw[: max(1, len(raw) // 3)])
    if suffix in (".csv", ".ts", ".json", ".txt"):
        out["not_utf8"] = folder / f"latin1{suffix}"
        lines = raw.split(b"\n")
        lines.insert(min(2, len(lines)), lines[min(1, len(lines) - 1)] + b"\xe9\xff")
        out["not_utf8"].write_bytes(b"\n".join(lines))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("domain", "task"), CASES)
def test_generic_bad_inputs_fail_cleanly(domain, task, trained, run_cli, tmp_path):
    t, run = trained(domain, task)
    good, _, _ = t.example_inputs(tmp_path)
    out = tmp_path / "out" / t.default_output
    out.parent.mkdir()
    code, _, err = _predict(run_cli, domain, run, tmp_path / "missing.csv", out)
    assert code == 2 and "missing.csv" in err and "not found" in err
    for name, path in _corrupt(good, tmp_path).items():
        code, _, err = _predict(run_cli, domain, run, path, out)
        if name == "truncated" and code == 0:   # a truncated table can still be whole rows: then it predicts
            out.unlink() if out.is_file() else None
            for meta in out.parent.glob("*.meta.json"):
                meta.unlink()
            continue
        assert code == 2, f"{name}: exit {code}\n{err}"
        assert path.name in err and "Traceback" not in err, f"{name}: the message must name the file\n{err}"
        _nothing_left(out.parent, out)


@pytest.mark.slow
@pytest.mark.parametrize(("domain", "task"), CASES)
def test_output_over_input_is_refused(domain, task, trained, run_cli, tmp_path):
    t, run = trained(domain, task)
    good, _, _ = t.example_inputs(tmp_path)
    if good.is_dir():
        if "/" not in t.output_formats(run_info_meta(run)):
            pytest.skip("the task writes a table from a folder: -o cannot name the input folder")
        target = good
    else:
        target = good.with_suffix(Path(t.default_output).suffix or good.suffix)
        if target != good:
            pytest.skip("the task writes another format than it reads: -o cannot name the input")
    before = hashlib.sha256(good.read_bytes()).hexdigest() if good.is_file() else None
    code, _, err = _predict(run_cli, domain, run, good, target)
    assert code == 2 and "would overwrite the input" in err
    if before:
        assert hashlib.sha256(good.read_bytes()).hexdigest() == before


@pytest.mark.slow
@pytest.mark.parametrize(("domain", "task"), CASES)
def test_task_bad_inputs(domain, task, trained, run_cli, tmp_path):
    t, run = trained(domain, task)
    cases = t.bad_inputs(tmp_path)
    assert len(cases) >= 1, "every task lists its own bad inputs"
    for case in cases:
        out = tmp_path / f"out_{case.name}" / t.default_output
        out.parent.mkdir()
        code, _, err = _predict(run_cli, domain, run, case.path, out, case.on_invalid)
        assert "Traceback" not in err, f"{case.name}\n{err}"
        if case.status is None:
            assert code == 2 and case.message in err, f"{case.name}: exit {code}\n{err}"
            assert case.path.name in err, f"{case.name}: the message must name the file\n{err}"
            _nothing_left(out.parent, out)
        else:
            assert code == 0, f"{case.name}: exit {code}\n{err}"
            table = pd.read_csv(out if out.suffix == ".csv" else out / "predictions.csv")
            assert case.status in set(table["status"]), f"{case.name}: statuses {set(table['status'])}"


@pytest.mark.slow
@pytest.mark.parametrize(("domain", "task"), CASES)
def test_an_interrupted_prediction_leaves_nothing(domain, task, trained, tmp_path):
    """SIGTERM while predicting a large input: exit 143, no output, no staging folder, an earlier output set
    untouched."""
    t, run = trained(domain, task)
    good, _, _ = t.example_inputs(tmp_path)
    if good.suffix != ".csv":
        pytest.skip("the large-input variant is built for table inputs")
    if getattr(t.reader(run_info_meta(run)), "whole", False):
        pytest.skip("the task reads its input whole (a forecast starts after the last row): the example repeated "
                    "is not a valid input (repeated timestamps)")
    frame = pd.read_csv(good, dtype=str, keep_default_na=False)
    big = tmp_path / "big.csv"
    pd.concat([frame] * (200_000 // max(len(frame), 1) + 1), ignore_index=True).to_csv(big, index=False)
    out = tmp_path / "out" / t.default_output
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "core.cli", "-q", "predict", "-d", domain, "-i", str(big), "-o", str(out),
           "--model", str(run), "--chunk-size", "500"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if out.parent.exists() and any(".partial-" in p.name for p in out.parent.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the prediction finished before it could be interrupted: use a larger input"
    time.sleep(0.5)   # well inside the batches
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    _nothing_left(out.parent, out)
