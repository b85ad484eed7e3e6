"""Pointclouds prediction edge cases a new user meets: a camera larger than the encoder takes at full
resolution, truncated PLY files, clouds that share a stem in one folder, non-finite intrinsics, manifest cells
that are empty or name a folder, and an output folder that holds the manifest's inputs."""
import json

import numpy as np
import pandas as pd
import pytest
from test_pointclouds_predict import CAMERA, META, _camera, _cloud, _net, _predict, _write_cloud

from core.errors import UserError
from domains.pointclouds import predict, readers
from domains.pointclouds.task import PointcloudReader


def test_working_factor_fits_the_encoder():
    assert predict.working_factor(24, 32, 4, 512) == 1
    s = predict.working_factor(480, 640, 8, 2048)
    assert s == 3 and 2 * -(-480 // (s * 8)) * -(-640 // (s * 8)) <= 2048
    assert 2 * -(-480 // 16) * -(-640 // 16) > 2048          # s = 2 would not fit


def test_downscale_keeps_the_nearest_point_and_upscale_restores_the_size():
    sparse = np.zeros((5, 7), np.float32)
    sparse[0, 0], sparse[1, 1], sparse[4, 6] = 3.0, 2.0, 5.0
    image = np.full((5, 7, 3), 100, np.uint8)
    K = np.array([[10.0, 0, 3.0], [0, 10.0, 2.0], [0, 0, 1]])
    small, colour, Ks = predict.downscale(sparse, image, K, 2)
    assert small.shape == (3, 4) and colour.shape == (3, 4, 3)
    assert small[0, 0] == 2.0 and small[2, 3] == 5.0 and np.count_nonzero(small) == 2   # z-buffer per block
    np.testing.assert_allclose(Ks[0], [5.0, 0, 1.25])       # (cx + 0.5) / s - 0.5: pixel centres line up
    depth, rel = predict.upscale(np.full((3, 4), 2.0, np.float32), np.full((3, 4), 0.1, np.float32), 2, (5, 7))
    assert depth.shape == (5, 7) and np.allclose(depth, 2.0, atol=1e-6) and np.allclose(rel, 0.1, atol=1e-6)


def test_a_camera_larger_than_the_encoder_takes_is_predicted_at_a_coarser_grid(tmp_path):
    big = {**CAMERA, "fx": 160.0, "fy": 160.0, "cx": 63.5, "cy": 47.5, "width": 128, "height": 96}
    rng = np.random.default_rng(0)
    depth = rng.uniform(2.0, 4.0, 600)
    u, v = rng.uniform(0, 127, 600), rng.uniform(0, 95, 600)
    _write_cloud(tmp_path / "big.ply", np.stack([(u - 63.5) / 160 * depth, (v - 47.5) / 160 * depth, depth], 1))
    (tmp_path / "big.json").write_text(json.dumps(big))
    meta = {**META, "encoder": {**META["encoder"], "max_len": 256}}       # 128 x 96 / 4^2 = 768 patches: too many
    table = _predict(tmp_path / "big.ply", tmp_path / "out", meta)
    assert table.status.tolist() == ["ok"] and "1/3 resolution" in table.message[0]
    out = np.load(tmp_path / "out" / "big.depth.npy")
    assert out.shape == (96, 128) and np.all(np.isfinite(out)) and np.all(out > 0)


def test_truncated_ply_is_unreadable_not_garbage(tmp_path):
    _write_cloud(tmp_path / "full.ply", _cloud(200))
    raw = (tmp_path / "full.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(raw[: len(raw) - 100])
    assert readers.ply_shortfall(tmp_path / "full.ply") is None
    with pytest.raises(UserError, match="truncated or corrupt PLY: the header declares 200 vertices"):
        readers.read_cloud(tmp_path / "cut.ply")


def test_clouds_sharing_a_stem_get_distinct_ids(tmp_path):
    _write_cloud(tmp_path / "scan.ply", _cloud(seed=1))
    _write_cloud(tmp_path / "scan.pcd", _cloud(seed=2))
    _write_cloud(tmp_path / "other.ply", _cloud(seed=3))
    _camera(tmp_path / "camera.json")
    assert [s.id for s in readers.plan(tmp_path)] == ["other", "scan.pcd", "scan.ply"]
    table = _predict(tmp_path, tmp_path.parent / "out")
    assert table.status.tolist() == ["ok"] * 3
    out = tmp_path.parent / "out"
    assert (out / "scan.pcd.depth.npy").exists() and (out / "scan.ply.depth.npy").exists()


def test_non_finite_intrinsics_are_a_bad_camera(tmp_path):
    (tmp_path / "cam.json").write_text(json.dumps(CAMERA).replace("40.0", "Infinity", 1))
    with pytest.raises(UserError, match="finite"):
        readers.read_camera(tmp_path / "cam.json")


def test_manifest_cells_that_are_empty_or_a_folder(tmp_path):
    _write_cloud(tmp_path / "a.ply", _cloud())
    _camera(tmp_path / "cam.json")
    (tmp_path / "sub").mkdir()
    pd.DataFrame([{"id": "nocam", "cloud": "a.ply", "camera": ""}, {"id": "dircam", "cloud": "a.ply", "camera": "sub"},
                  {"id": "nocloud", "cloud": "", "camera": "cam.json"}]).to_csv(tmp_path / "m.csv", index=False)
    rows, _ = predict.predict_specs([_net()], META, readers.plan(tmp_path / "m.csv"))
    by_id = {r["id"]: r for r in rows}
    assert {r["status"] for r in rows} == {"missing_file"}
    assert "no camera file given" in by_id["nocam"]["message"]
    assert "is a folder" in by_id["dircam"]["message"]
    assert "no cloud file given" in by_id["nocloud"]["message"]


def test_output_folder_holding_the_manifests_inputs_is_refused(tmp_path):
    """An earlier output folder (meta.json) into which the user copied clouds: replacing it would delete them."""
    prev = tmp_path / "prev"
    prev.mkdir()
    (prev / "meta.json").write_text("{}")
    _write_cloud(prev / "good.ply", _cloud())
    _camera(prev / "good.json")
    pd.DataFrame([{"cloud": "prev/good.ply", "camera": "prev/good.json"}]).to_csv(tmp_path / "m.csv", index=False)
    files = PointcloudReader(META).input_files(tmp_path / "m.csv")
    assert prev / "good.ply" in files and prev / "good.json" in files
    from core.outputs import check_not_input
    with pytest.raises(UserError, match="would overwrite the input"):
        check_not_input(prev, files)
    assert (prev / "good.ply").exists()


def test_predict_command_settings_override_the_stored_ones():
    """`--set predict.write_ply=false` at predict time changes this run, not the model (it was silently
    ignored: the stored settings always won); keys the command does not give stay as stored."""
    from core.domain import get_domain
    from domains.pointclouds.task import DepthTask
    task = DepthTask(None)
    stored = {**META, "predict": {**META["predict"], "outlier_filter": "sor2"}}
    assert task.with_command_settings(stored)["predict"] == stored["predict"]      # no command config
    task.prediction_config = get_domain("pointclouds").config(None, ["predict.write_ply=false", "predict.voxel=0.05"])
    merged = task.with_command_settings(stored)
    assert merged["predict"] == {"outlier_filter": "sor2", "voxel": 0.05, "write_ply": False}
    assert stored["predict"]["write_ply"] is True and task.reader(stored).meta["predict"]["voxel"] == 0.05


def test_frame_files_cross_process_boundaries(tmp_path):
    """`predict -j N` returns each frame's files from a worker, pickled (a closure writer was a traceback)."""
    import pickle
    _write_cloud(tmp_path / "scan.ply", _cloud())
    (tmp_path / "scan.json").write_text(json.dumps(CAMERA))
    _, files = predict.predict_specs([_net()], META, readers.plan(tmp_path / "scan.ply"))
    back = pickle.loads(pickle.dumps(files))
    assert set(back) == set(files) and {"scan.depth.png", "scan.dense.ply", "scan.preview.png"} <= set(back)
    back["scan.depth.png"](tmp_path / "d.png")
    back["scan.dense.ply"](tmp_path / "d.ply")
    assert (tmp_path / "d.png").stat().st_size > 0 and (tmp_path / "d.ply").stat().st_size > 0


def test_depth_png_never_writes_a_positive_depth_as_unknown():
    depth = np.array([[0.0004, 0.0006, 1.2345], [70.0, np.nan, 0.0]], np.float32)
    np.testing.assert_array_equal(predict.depth_png_mm(depth), [[1, 1, 1234], [65535, 0, 0]])


def test_semicolon_manifest_says_which_separator(tmp_path):
    (tmp_path / "m.csv").write_text("cloud;camera\nscan.ply;scan.json\n")
    with pytest.raises(UserError, match="looks ';'-separated: save the file with ','"):
        readers.plan(tmp_path / "m.csv")
