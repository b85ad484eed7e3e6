"""benchmarks/{pointclouds,poses,audio}.py on tiny settings: each runs its whole commands and writes rows with
the documented names and fields (the molecules, timeseries and spectra scripts have their own smoke tests)."""
from __future__ import annotations

import json
import math
import sys

import pytest
import yaml

from benchmarks.common import ROOT, ROW_KEYS

pytestmark = pytest.mark.slow
TEST_PROFILE = yaml.safe_load((ROOT / "workflows" / "config.test.yaml").read_text())["domains"]


def run_script(module, argv: list[str], tmp_path, monkeypatch) -> list[dict]:
    """Run `python -m benchmarks.<name> ARGV` in-process with results/ under tmp_path; return the rows written."""
    from benchmarks import common
    name = module.__name__.rsplit(".", 1)[1]
    monkeypatch.setattr(common, "ROOT", tmp_path)
    monkeypatch.setattr(module, "OUT", tmp_path / "results" / name / "bench")
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{name}.py", *argv])
    module.main()
    rows = json.loads((tmp_path / "results" / name / "benchmark.json").read_text())
    assert rows and not (tmp_path / "benchmarks").exists()          # no --commit: nothing committed
    for row in rows:
        assert list(row)[:7] == list(ROW_KEYS), row
        assert isinstance(row["value"], (int, float)) and math.isfinite(row["value"]), row
    return rows


def with_sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def test_pointclouds_benchmark(tmp_path, monkeypatch):
    from benchmarks import pointclouds
    rows = run_script(pointclouds, ["--quick", *with_sets(TEST_PROFILE["pointclouds"]["set"])], tmp_path, monkeypatch)
    assert {r["task"] for r in rows} == {"depth-completion"}
    assert {"unseen-meshes-lidar32", "unseen-meshes-sfm"} <= {r["dataset"] for r in rows}
    assert {"sciformer", "nearest", "linear", "ip-basic", "bilateral"} <= {r["method"] for r in rows}
    assert {"absrel", "rmse", "mae", "irmse", "delta1", "megapixels_per_s"} <= {r["metric"] for r in rows}


def test_poses_benchmark(tmp_path, monkeypatch):
    pytest.importorskip("mmpose", reason="the poses benchmark's peers are mmpose's")
    from benchmarks import poses
    from domains.poses.task import SMOKE
    rows = run_script(poses, ["--quick", *with_sets([*SMOKE, "lift.model.hot_keep=3"])], tmp_path, monkeypatch)
    assert {r["task"] for r in rows} == {"lift-3d"}
    assert "unseen-motions" in {r["dataset"] for r in rows}
    methods = {r["method"] for r in rows}
    assert {"sciformer", "sciformer-hot", "sciformer-ft", "mmpose-videopose3d-27", "mlp-lifter"} <= methods
    assert {"mpjpe", "p_mpjpe", "n_mpjpe", "mpjve", "gflops_per_frame", "frames_per_s"} <= {r["metric"] for r in rows}


def test_audio_benchmark(tmp_path, monkeypatch):
    from benchmarks import audio
    rows = run_script(audio, ["--quick", *with_sets(TEST_PROFILE["audio"]["set"])], tmp_path, monkeypatch)
    assert {r["task"] for r in rows} == {"enhance", "classify"}
    enhance = {(r["method"], r["metric"]) for r in rows if r["task"] == "enhance"}
    assert {("sciformer", m) for m in ("pesq", "stoi", "si_sdr", "realtime_factor")} <= enhance
    assert ("wiener", "pesq") in enhance and any(r["split"].startswith("unseen-voices-snr") for r in rows)
    classify = {(r["method"], r["metric"]) for r in rows if r["task"] == "classify"}
    assert {("sciformer", "accuracy"), ("sciformer", "log_loss")} <= classify
