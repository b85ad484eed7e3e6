"""The Domain contract, checked for EVERY registered domain (timm-style parametrization): a tiny config runs
prepare -> train (every stage) -> evaluate -> predict through the CLI, the promised columns appear, and bad
input gives the promised error without a traceback. core never imports a domain."""
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.checkpoint import load_meta
from core.domain import domain_names, get_domain

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", domain_names())
@pytest.mark.slow
def test_domain_end_to_end(name, tmp_path, run_cli):
    dom = get_domain(name)
    sets = [a for o in dom.smoke_overrides for a in ("--set", o)]
    prepared, run = tmp_path / "prepared", tmp_path / "run"
    code, out, err = run_cli("prepare", "-d", name, "-o", prepared, *sets)
    assert code == 0, err
    init = []
    for stage in dom.stages:
        stage_dir = tmp_path / f"stage_{stage}"
        code, out, err = run_cli("-q", "train", "-d", name, "-i", prepared, "-o", stage_dir, "--stage", stage,
                                 *init, *sets)
        assert code == 0, err
        init = ["--init", stage_dir]
    run = stage_dir
    code, out, err = run_cli("-q", "evaluate", "-d", name, "-i", prepared, "--model", run, "-o", tmp_path / "m.json", *sets)
    assert code == 0, err
    good, bad, message = dom.example_inputs(tmp_path)
    meta_task = load_meta(run / "member_0")["task"]
    suffix = dom.output_formats(meta_task)[0]   # a whole-input domain may write e.g. .npy maps
    out_file = tmp_path / f"pred{suffix}"
    code, out, err = run_cli("-q", "predict", "-d", name, "-i", good, "-o", out_file, "--model", run)
    assert code == 0, err
    assert out_file.exists() and (tmp_path / f"pred{suffix}.meta.json").exists()
    if suffix == ".csv":
        frame = pd.read_csv(out_file)
        for column in dom.output_columns(meta_task):
            assert column in frame.columns
        if dom.streams:  # row-wise prediction keeps every input row (on_invalid=mark)
            assert len(frame) == len(pd.read_csv(good))
    # bad input: clear error, no traceback, nothing written
    code, out, err = run_cli("-q", "predict", "-d", name, "-i", bad, "-o", tmp_path / f"bad{suffix}", "--model", run)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / f"bad{suffix}").exists()


def test_core_never_imports_a_domain():
    offenders = [str(p) for p in (ROOT / "core").rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+domains\b", p.read_text(), re.M)]
    assert offenders == []


def test_domains_are_discovered_through_entry_points_only():
    code = "from core.domain import domain_names; print(domain_names())"
    # importing the registry alone must not import `domains`; listing them loads them via entry points
    probe = subprocess.run([sys.executable, "-c", "import sys, core.cli; print('domains' in sys.modules)"],
                           capture_output=True, text=True, cwd=ROOT)
    assert probe.stdout.strip() == "False", probe.stderr
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "molecules" in listed.stdout, listed.stderr
