"""Pointclouds domain: a tiny prepare -> train -> evaluate -> report -> predict run through the CLI (the
metrics every method reports; same seed, same numbers), and the real Aloe scene."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from domains.pointclouds import aloe

ROOT = Path(__file__).resolve().parents[1]
HAVE_ALOE = any((d / "aloeGT.png").exists() or (d / "aloeGT.png.gz").exists() for d in aloe.DATA_DIRS)
TINY = ["scenes.height=48", "scenes.width=64", "scenes.views.train=6", "scenes.views.val=3", "scenes.views.test=3",
        "scenes.views_per_scene=3", "sensors.patterns=[lidar32, sfm]", "model.point_hidden=8",
        "model.decoder_hidden=8", "encoder.d_model=16", "encoder.n_heads=2", "encoder.n_layers=1", "encoder.d_ff=32",
        "train.epochs=1", "train.max_steps=3", "train.batch_size=4", "train.progress=false", "evaluate.tune_frames=2",
        "aloe.draws=1", "aloe.downsample=16", f"aloe.use={str(HAVE_ALOE).lower()}"]
SETS = [a for o in TINY for a in ("--set", o)]


def _run(run_cli, folder: Path) -> list[dict]:
    for args in (("prepare", "-o", folder / "prep"), ("train", "-i", folder / "prep", "-o", folder / "model"),
                 ("evaluate", "-i", folder / "prep", "--model", folder / "model", "-o", folder / "metrics.json")):
        code, _, err = run_cli("-q", args[0], "-d", "pointclouds", *args[1:], *SETS)
        assert code == 0, err
    return json.loads((folder / "metrics.json").read_text())["rows"]


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tmp_path, run_cli):
    rows = _run(run_cli, tmp_path)
    methods = {r["method"] for r in rows}
    assert methods == {"sciformer", "nearest", "linear", "ip-basic", "bilateral"}
    datasets = {r["dataset"] for r in rows}
    assert {"unseen-meshes-lidar32", "unseen-meshes-sfm"} <= datasets
    metrics = {(r["dataset"], r["method"], r["metric"]): r["value"] for r in rows}
    for method in methods:
        for metric in ("absrel", "rmse", "mae", "irmse", "delta1", "megapixels_per_s"):
            assert np.isfinite(metrics[("unseen-meshes-lidar32", method, metric)])
    assert -1 <= metrics[("unseen-meshes-lidar32", "sciformer", "error_uncertainty_spearman")] <= 1
    assert all(r["task"] == "depth-completion" and r["split"] == "test" for r in rows)
    if HAVE_ALOE:
        assert {"aloe-lidar32", "aloe-sfm"} <= datasets
        assert np.isfinite(metrics[("aloe-sfm", "sciformer", "disp_mae")])
    code, _, err = run_cli("-q", "report", "-d", "pointclouds", "-i", tmp_path / "metrics.json",
                           "-o", tmp_path / "report", *SETS)
    assert code == 0, err
    assert (tmp_path / "report" / "pointclouds_examples.png").exists()
    assert (tmp_path / "report" / "pointclouds_error_vs_depth.png").exists()
    # the committed example frames (a manifest whose third row points at a missing cloud)
    code, _, err = run_cli("-q", "predict", "-d", "pointclouds", "-i", ROOT / "data" / "pointclouds" / "frames.csv",
                           "-o", tmp_path / "depth", "--model", tmp_path / "model")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "depth" / "predictions.csv")
    assert table.status.tolist() == ["ok", "ok", "missing_file"]
    depth = np.load(tmp_path / "depth" / "frame1.depth.npy")
    assert depth.shape == (96, 128) and np.all(np.isfinite(depth))
    # same config + seed -> the same metrics
    again = _run(run_cli, tmp_path / "again")
    assert [(r["dataset"], r["method"], r["value"]) for r in again if r["metric"] == "absrel"] == \
        [(r["dataset"], r["method"], r["value"]) for r in rows if r["metric"] == "absrel"]


def test_aloe_is_read_at_the_asked_resolution():
    if not HAVE_ALOE:
        pytest.skip("Debian's opencv-doc (the Middlebury Aloe pair) is not installed: apt-get install opencv-doc")
    scene = aloe.load(8, 1.5)
    assert scene["image"].shape == (138, 160, 3) and scene["depth"].shape == (138, 160)
    known = scene["depth"] > 0
    assert 0.9 < known.mean() < 1.0
    assert np.median(scene["depth"][known]) == pytest.approx(1.5, rel=0.02)
    disparity = scene["disparity_scale"] / scene["depth"][known]       # full-resolution pixels
    assert 30 < disparity.min() and disparity.max() < 240


def test_missing_aloe_names_the_debian_package(tmp_path):
    with pytest.raises(UserError, match="opencv-doc"):
        aloe.load(8, 1.5, dirs=(tmp_path,))


def test_block_median_ignores_unknown_pixels():
    disp = np.array([[10, 10, 0, 0], [10, 30, 0, 5]], float)
    np.testing.assert_array_equal(aloe.block_median(disp, 2), [[10, 0]])
