"""The contract, checked for EVERY registered (domain, task), timm-style: fast checks (prepare, build, forward,
backward, save/load) and an end-to-end CLI run (prepare -> train every stage -> evaluate -> predict -> report)
with the task's smoke settings; bad input gives the promised error without a traceback and leaves nothing.
The tests' example domain (tests/example_domains/tiny, one folder, found through SCIFORMER_DOMAIN_PATH) is
picked up like any other: a domain is one folder."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.checkpoint import load_weights, save_weights
from core.domain import domain_names, get_domain, registered_names
from core.train import to_device

ROOT = Path(__file__).resolve().parents[1]
def _case(domain: str, task: str):
    return pytest.param(domain, task, id=f"{domain}-{task}")


CASES = [_case(d, t) for d in domain_names() for t in get_domain(d).task_names()]


def _overrides(task) -> list[str]:
    return [*task.smoke_overrides, f"task={task.name}"]


def _sets(task) -> list[str]:
    return [a for o in _overrides(task) for a in ("--set", o)]


@pytest.mark.parametrize(("domain", "task"), CASES)
def test_build_forward_backward_save_load(domain, task, tmp_path):
    dom = get_domain(domain)
    cfg = dom.config(None, _overrides(dom.task(task)))
    t = dom.task_of(cfg)
    assert t.name == task
    t.prepare(cfg, tmp_path)
    torch.manual_seed(0)
    training = t.build_training(cfg, tmp_path, t.stages[0], None, 0)
    assert len(training.train_data) and len(training.val_data)
    batch = to_device(training.collate(list(training.train_data[:4])), torch.device("cpu"))
    training.model.train()
    loss = training.loss(training.model(batch), batch)
    loss = loss[0] if isinstance(loss, tuple) else loss
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in training.model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), "no parameter received a gradient"
    save_weights(training.model, tmp_path / "ckpt", {"task": training.metadata})
    rebuilt = t.build_model(training.metadata)
    load_weights(rebuilt, tmp_path / "ckpt")
    training.model.eval(), rebuilt.eval()
    val = to_device((training.val_collate or training.collate)(list(training.val_data[:4])), torch.device("cpu"))
    with torch.no_grad():
        a, b = training.model(val), rebuilt(val)
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        torch.testing.assert_close(x, y, rtol=0, atol=0)   # the same weights give the same outputs exactly


@pytest.mark.parametrize(("domain", "task"), CASES)
@pytest.mark.slow
def test_domain_end_to_end(domain, task, tmp_path, run_cli):
    dom = get_domain(domain)
    t = dom.task(task)
    sets = _sets(t)
    prepared = tmp_path / "prepared"
    code, out, err = run_cli("-q", "prepare", "-d", domain, "-o", prepared, *sets)
    assert code == 0, err
    init = []
    for stage in t.stages:
        run = tmp_path / f"stage_{stage}"
        code, out, err = run_cli("-q", "train", "-d", domain, "-i", prepared, "-o", run, "--stage", stage,
                                 *init, *sets)
        assert code == 0, err
        init = ["--init", run]
    metrics = tmp_path / "metrics.json"
    # no -d: the model (and the prepared folder) record their domain
    code, out, err = run_cli("-q", "evaluate", "-i", prepared, "--model", run, "-o", metrics, *sets)
    assert code == 0, err
    rows = pd.read_json(metrics, typ="series")["rows"]
    assert rows and {"task", "dataset", "split", "method", "metric", "value", "machine"} <= set(rows[0])
    assert any(r["method"].startswith("sciformer") for r in rows)
    assert len({r["method"] for r in rows}) >= 2, "evaluate must compare the model with at least one baseline"
    assert all(pd.notna(r["value"]) and abs(float(r["value"])) != float("inf") for r in rows
               if r["method"].startswith("sciformer"))
    code, out, err = run_cli("-q", "report", "-d", domain, "-i", metrics, "-o", tmp_path / "report", *sets)
    assert code == 0, err
    assert (tmp_path / "report" / "metrics.html").exists()

    good, bad, message = t.example_inputs(tmp_path)
    out_name = t.default_output
    out_path = tmp_path / "pred" / out_name
    code, out, err = run_cli("-q", "predict", "-d", domain, "-i", good, "-o", out_path, "--model", run)
    assert code == 0, err
    meta = out_path / "meta.json" if out_path.is_dir() else out_path.with_name(out_path.name + ".meta.json")
    assert out_path.exists() and meta.exists()
    if out_path.suffix == ".csv" or out_path.is_dir():
        frame = pd.read_csv(out_path if out_path.suffix == ".csv" else out_path / "predictions.csv")
        assert len(frame) > 0 and "status" in frame
    assert not [p for p in (tmp_path / "pred").iterdir() if ".partial-" in p.name], "staging left behind"
    _same_under_bf16(run_cli, domain, good, out_path, run)
    _same_with_workers(run_cli, good, out_path, run, domain)
    # bad input: clear error, no traceback, nothing written
    bad_out = tmp_path / "bad" / out_name
    code, out, err = run_cli("-q", "predict", "-d", domain, "-i", bad, "-o", bad_out, "--model", run)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not bad_out.exists() and not list((tmp_path / "bad").glob(".*partial*"))
    # validate -i runs the same checks as predict
    code, out, err = run_cli("validate", "-d", domain, "-i", bad, "--model", run, *sets)
    assert code == 2 and message in err


def _table(path: Path) -> pd.DataFrame | None:
    """The prediction table of an output (a CSV file, or a folder's predictions.csv), if it has one."""
    table = path if path.suffix == ".csv" else path / "predictions.csv"
    return pd.read_csv(table) if table.exists() else None


def _same_with_workers(run_cli, good: Path, serial_out: Path, run: Path, domain: str) -> None:
    """`predict -j 2` (batches predicted in worker processes, results pickled back) gives the serial run's
    output set: the same files, rows and statuses, numbers to float32 rounding (batches differ in size)."""
    out = serial_out.parent.parent / "pred_j2" / serial_out.name
    code, _, err = run_cli("-q", "predict", "-i", good, "-o", out, "--model", run, "-j", "2",   # no -d: the model's
                           "--chunk-size", "1")
    assert code == 0, err
    if serial_out.is_dir():
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in serial_out.iterdir())
    elif serial_out.suffix == ".npy":                     # a map: tiles of one row instead of the default
        x, y = np.load(serial_out), np.load(out)
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5 * np.nanmax(np.abs(x), initial=1.0), equal_nan=True)
    a, b = _table(serial_out), _table(out)
    if a is None:
        return
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for col in a.columns:
        if a[col].dtype.kind == "f":
            x, y = a[col].to_numpy(float), b[col].to_numpy(float)
            np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5 * np.nanmax(np.abs(x), initial=1.0), err_msg=col)
        else:
            assert (a[col].astype(str) == b[col].astype(str)).all(), col


def _same_under_bf16(run_cli, domain: str, good: Path, fp32_out: Path, run: Path) -> None:
    """`predict --precision bf16` works for every domain, records its precision, gives the same statuses, the
    same numbers to bf16 rounding (5 % of each float column's largest magnitude: bf16 keeps 8 bits of mantissa,
    ~0.4 % per rounding, compounded over the layers of these tiny models) and the same classes but near ties."""
    out = fp32_out.parent.parent / "pred_bf16" / fp32_out.name
    code, _, err = run_cli("-q", "predict", "-d", domain, "-i", good, "-o", out, "--model", run, "--precision", "bf16")
    assert code == 0, err
    meta = out / "meta.json" if out.is_dir() else out.with_name(out.name + ".meta.json")
    assert pd.read_json(meta, typ="series")["precision"] == "bf16"
    a, b = _table(fp32_out), _table(out)
    if a is None:
        return
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    if "status" in a:
        assert (a["status"] == b["status"]).all()
    for col in a.select_dtypes("integer").columns:   # class indices: a near tie may flip under bf16
        assert (a[col] == b[col]).mean() >= 0.9, col
    for col in a.select_dtypes("floating").columns:
        x, y = a[col].to_numpy(float), b[col].to_numpy(float)
        assert (np.isnan(x) == np.isnan(y)).all(), col
        scale = np.nanmax(np.abs(x), initial=0.0)
        np.testing.assert_allclose(y, x, rtol=0, atol=0.05 * scale + 1e-6, equal_nan=True, err_msg=col)


def test_example_domain_is_one_folder():
    assert "tiny" in registered_names() and get_domain("tiny").task_names() == ["mean", "smooth"]
    folder = ROOT / "tests" / "example_domains" / "tiny"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("__pycache__")) == \
        ["__init__.py", "config.yaml", "schema.json"]


def test_core_never_imports_a_domain():
    offenders = [str(p) for p in (ROOT / "core").rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+domains\b", p.read_text(), re.M)]
    assert offenders == []


def test_listing_domains_imports_none():
    # the CLI's argument parsing (domain choices) must not import any domain: a command pays only for its own
    probe = subprocess.run([sys.executable, "-c", "import sys, core.cli; core.cli.build_parser(); "
                            "print(any(m.startswith(('domains', 'sciformer_domain_')) for m in sys.modules))"],
                           capture_output=True, text=True, cwd=ROOT)
    assert probe.stdout.strip() == "False", probe.stderr
