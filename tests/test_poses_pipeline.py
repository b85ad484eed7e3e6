"""Poses domain end to end through the CLI on the smoke configuration: prepare -> train (twice: same config and
seed -> same weights) -> evaluate (with the mmpose peers trained by mmengine's Runner and the real clip) ->
report -> predict a real demo clip's keypoints into every output format."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pybullet_data", reason="the poses domain reads pybullet 3.2.7's motion clips")
pytest.importorskip("mmpose", reason="the poses domain builds on mmpose")
pytest.importorskip("Pose2Sim", reason="the real clips' calibration ships in the pose2sim 0.10.49 wheel")

from domains.poses.task import EXAMPLE, SMOKE  # noqa: E402

SETS = [a for o in SMOKE for a in ("--set", o)]


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tmp_path, run_cli):
    prepared = tmp_path / "prep"
    assert run_cli("-q", "prepare", "-d", "poses", "-o", prepared, *SETS)[0] == 0
    hashes = json.loads((prepared / "resolved_config.json").read_text())["data_hashes"]
    assert {"train.npz", "val.npz", "test.npz", "real.npz"} <= set(hashes)
    for run in ("model", "model2"):
        code, _, err = run_cli("-q", "train", "-d", "poses", "-i", prepared, "-o", tmp_path / run, *SETS)
        assert code == 0, err
    first, second = (json.loads((tmp_path / r / "run.json").read_text()) for r in ("model", "model2"))
    same = {k: v for k, v in first["files"].items() if not k.endswith("meta.json")}   # meta.json holds timings
    assert same == {k: v for k, v in second["files"].items() if not k.endswith("meta.json")}
    assert any(k.endswith("model.safetensors") for k in same) and "calibration.json" in same   # same config + seed
    assert json.loads((tmp_path / "model" / "calibration.json").read_text())["sigma_scale"] > 0

    metrics = tmp_path / "metrics.json"
    code, _, err = run_cli("-q", "evaluate", "-d", "poses", "-i", prepared, "--model", tmp_path / "model",
                           "-o", metrics, *SETS)
    assert code == 0, err
    rows = json.loads(metrics.read_text())["rows"]
    got = {(r["dataset"], r["method"], r["metric"]) for r in rows if "clip" not in r}
    for method in ("sciformer", "mmpose-videopose3d-27", "mlp-lifter"):
        for metric in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve", "gflops_per_frame", "frames_per_s"):
            assert ("unseen-motions", method, metric) in got
        assert ("real-trial1", method, "p_mpjpe") in got
    assert ("real-trial1", "triangulation", "reprojection_px") in got
    assert all(np.isfinite(r["value"]) for r in rows)
    assert {r["clip"] for r in rows if "clip" in r} == {"walk"}

    # retuning the peers retrains them (two at once here) but not our model: their keys are evaluation-only
    member_meta = (tmp_path / "model" / "member_0" / "meta.json").read_text()
    peers = [a for o in ("lift.mmpose_videopose3d_27.epochs=2", "lift.mlp_lifter.epochs=2", "lift.peer_jobs=2")
             for a in ("--set", o)]
    code, _, err = run_cli("-q", "train", "-d", "poses", "-i", prepared, "-o", tmp_path / "model", *SETS, *peers)
    assert code == 0, err
    assert (tmp_path / "model" / "member_0" / "meta.json").read_text() == member_meta
    code, _, err = run_cli("-q", "evaluate", "-d", "poses", "-i", prepared, "--model", tmp_path / "model",
                           "-o", tmp_path / "metrics2.json", *SETS, *peers)
    assert code == 0, err
    for peer in ("mmpose-videopose3d-27", "mlp-lifter"):
        history = json.loads((prepared / "baselines" / peer / "meta.json").read_text())["history"]
        assert [h["epoch"] for h in history] == [0, 1], peer
    code, _, err = run_cli("-q", "report", "-d", "poses", "-i", metrics, "-o", tmp_path / "report", *SETS)
    assert code == 0, err
    for figure in ("error_per_joint.png", "mpjpe_per_clip.png", "real_p_mpjpe.png", "skeleton_predicted.png"):
        assert (tmp_path / "report" / figure).stat().st_size > 1000, figure

    outputs = {}
    for suffix in (".csv", ".json", ".npy"):
        out = tmp_path / "pred" / f"lifted{suffix}"
        code, _, err = run_cli("-q", "predict", "-d", "poses", "-i", EXAMPLE, "-o", out, "--model", tmp_path / "model")
        assert code == 0, err
        assert (tmp_path / "pred" / "lifted.skeleton.png").exists()
        outputs[suffix] = out
    table = pd.read_csv(outputs[".csv"])
    assert len(table) == 2 * 100 * 17 and set(table["track_id"]) == {0, 1}          # 2 people x 100 frames
    ok = table[table["status"] != "no_detection"]
    assert np.isfinite(ok[["x_mm", "y_mm", "z_mm"]]).all().all() and (ok["unc_mm"] > 0).all()
    np.testing.assert_allclose(ok[ok["joint"] == "pelvis"][["x_mm", "y_mm", "z_mm"]], 0.0, atol=1e-3)
    lifted = json.loads(outputs[".json"].read_text())
    assert lifted["meta_info"]["units"] == "mm" and len(lifted["instance_info"]) == 100
    array = np.load(outputs[".npy"])
    assert array.shape == (2, 100, 17, 4)
    # the three formats carry the same numbers (the CSV at its printed precision)
    first = table[(table["track_id"] == 0) & (table["frame"] == 50)][["x_mm", "y_mm", "z_mm"]].to_numpy()
    np.testing.assert_allclose(array[0, 50, :, :3], first, atol=1e-3)
    statuses = json.loads((tmp_path / "pred" / "lifted.status.json").read_text())
    assert set(statuses["status"]) == {"0", "1"} and len(statuses["status"]["0"]) == statuses["frames"] == 100

    # an NPY says neither its image size nor its layout: the command's lift.input gives them for every input
    npy = tmp_path / "bare" / "clip.npy"
    npy.parent.mkdir()
    np.save(npy, array[0, :, :, :2] / 10 + 500)       # any plausible pixel coordinates, 17 joints
    out = tmp_path / "bare_out.csv"
    code, _, err = run_cli("-q", "predict", "-d", "poses", "-i", npy, "-o", out, "--model", tmp_path / "model")
    assert code != 0 and "image size is missing" in err and not out.exists()
    code, _, err = run_cli("-q", "predict", "-d", "poses", "-i", npy, "-o", out, "--model", tmp_path / "model",
                           "--set", "lift.input.image_size=[1000,1000]", "--set", "lift.input.layout=h36m")
    assert code == 0, err
    assert len(pd.read_csv(out)) == 100 * 17
