"""Pointclouds domain: new-data inputs (camera JSON, clouds, manifests), bad-input statuses, written outputs."""
import json

import numpy as np
import open3d as o3d
import pandas as pd
import pytest
import torch
from PIL import Image

from core.errors import UserError
from core.outputs import OutputSet
from domains.pointclouds import geometry, model, predict, readers
from domains.pointclouds.task import PointcloudReader

CAMERA = {"fx": 40.0, "fy": 40.0, "cx": 15.5, "cy": 11.5, "width": 32, "height": 24}
SETTINGS = {"outlier_filter": "none", "voxel": 0.0, "write_ply": True}
META = {"patch": 4, "point_hidden": 8, "decoder_hidden": 8, "min_points": 4, "predict": SETTINGS,
        "encoder": {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "dropout": 0.0, "attention": "sdpa",
                    "rotary": True, "max_len": 512}}


def _cloud(n=150, seed=0, z=(2.0, 4.0)) -> np.ndarray:
    """Points in the camera frame that project into the 32 x 24 image."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(*z, n)
    u, v = rng.uniform(0, 31, n), rng.uniform(0, 23, n)
    return np.stack([(u - 15.5) / 40 * depth, (v - 11.5) / 40 * depth, depth], 1)


def _write_cloud(path, points):
    o3d.io.write_point_cloud(str(path), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)))


def _camera(path, **changes):
    path.write_text(json.dumps({**CAMERA, **changes}))
    return path


@pytest.mark.parametrize("change,fragment", [
    ({"fx": -3}, "fx"), ({"width": 32.5}, "width"), ({"cx": 500}, "outside the 32 x 24 image"),
    ({"extrinsics": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}, "not a rigid transform"),
    ({"skew": 0.1}, "Additional properties"),
])
def test_camera_json_is_validated(tmp_path, change, fragment):
    with pytest.raises(UserError, match=fragment):
        readers.read_camera(_camera(tmp_path / "cam.json", **change))
    missing = {k: v for k, v in CAMERA.items() if k != "fy"}
    (tmp_path / "m.json").write_text(json.dumps(missing))
    with pytest.raises(UserError, match="'fy' is a required property"):
        readers.read_camera(tmp_path / "m.json")
    (tmp_path / "bad.json").write_text("{fx: 1")
    with pytest.raises(UserError, match="not valid JSON"):
        readers.read_camera(tmp_path / "bad.json")


def test_camera_to_world_extrinsics_are_inverted(tmp_path):
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    cam = readers.read_camera(_camera(tmp_path / "c.json", extrinsics=pose.tolist(),
                                      extrinsics_convention="camera_to_world"))
    np.testing.assert_allclose(cam.extrinsic[:3, 3], [-1.0, -2.0, -3.0])


def test_cloud_reader_bad_inputs(tmp_path):
    for ext in (".ply", ".pcd", ".xyz", ".pts"):
        path = tmp_path / f"ok{ext}"
        _write_cloud(path, _cloud(20))
        points, dropped = readers.read_cloud(path)
        assert points.shape == (20, 3) and dropped == 0
    (tmp_path / "empty.ply").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        readers.read_cloud(tmp_path / "empty.ply")
    (tmp_path / "corrupt.ply").write_text("this is not a ply file\n1 2 3\n")
    with pytest.raises(UserError, match="no points could be read"):
        readers.read_cloud(tmp_path / "corrupt.ply")
    (tmp_path / "cloud.las").write_text("x")
    with pytest.raises(UserError, match="unsupported point cloud format"):
        readers.read_cloud(tmp_path / "cloud.las")
    (tmp_path / "broken.xyz").write_text("1 2 3\n4 5 6\nfoo bar baz\n7 8 9\n")
    with pytest.raises(UserError, match="data lines"):
        readers.read_cloud(tmp_path / "broken.xyz")
    (tmp_path / "nan.xyz").write_text("1 2 3\nnan 1 1\n1 inf 2\n4 5 6\n")
    points, dropped = readers.read_cloud(tmp_path / "nan.xyz")
    assert len(points) == 2 and dropped == 2


def _net():
    torch.manual_seed(0)
    return model.build(META).eval()


def _predict(source, out_dir, meta=META, on_invalid="mark"):
    """What `sciformer predict` does with the task's reader and predict, without a trained run: check (no
    model), batches, rows + files into an atomic output folder. Returns the status table."""
    reader = PointcloudReader(meta)
    reader.check(source)
    tables = []
    with OutputSet(out_dir, [source]) as out:
        for batch in reader.batches(source, 3):
            rows, files = predict.predict_specs([_net()], meta, batch.data)
            for name, content in files.items():
                out.write(name, content)
            table = pd.DataFrame(rows)
            if on_invalid == "error" and (table.status != "ok").any():
                raise UserError(f"frame {table.id[table.status != 'ok'].iloc[0]}: not ok")
            tables.append(table[table.status == "ok"] if on_invalid == "skip" else table)
            out.append(tables[-1])
        out.commit({})
    return pd.concat(tables, ignore_index=True)


def test_single_cloud_prediction_writes_every_output(tmp_path):
    _write_cloud(tmp_path / "scan.ply", _cloud())
    _camera(tmp_path / "scan.json")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3)).astype(np.uint8)).save(tmp_path / "scan.png")
    out = tmp_path / "out"
    table = _predict(tmp_path / "scan.ply", out)
    assert table.status.tolist() == ["ok"]
    depth = np.load(out / "scan.depth.npy")
    assert depth.shape == (24, 32) and np.all(np.isfinite(depth)) and np.all(depth > 0)
    mm = np.asarray(Image.open(out / "scan.depth.png"))
    assert mm.dtype == np.uint16 and abs(int(mm[5, 5]) - round(float(depth[5, 5]) * 1000)) <= 1
    conf = np.load(out / "scan.confidence.npy")
    assert np.all((conf > 0) & (conf <= 1))
    assert np.asarray(Image.open(out / "scan.preview.png")).shape == (24, 4 * 32, 3)
    dense = o3d.io.read_point_cloud(str(out / "scan.dense.ply"))
    assert len(dense.points) == 24 * 32 and dense.has_colors()
    status = pd.read_csv(out / "predictions.csv")
    assert status.loc[0, "status"] == "ok" and status.loc[0, "points"] == 150
    assert status.loc[0, "depth_npy"] == "scan.depth.npy"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]    # no staging folder left


def test_single_bad_cloud_is_an_error(tmp_path):
    _write_cloud(tmp_path / "scan.ply", _cloud() * [1, 1, -1])      # everything behind the camera
    _camera(tmp_path / "scan.json")
    with pytest.raises(UserError, match="scan.ply.*behind the camera"):       # before any model loads
        PointcloudReader(META).check(tmp_path / "scan.ply")
    _write_cloud(tmp_path / "nocam.ply", _cloud())
    (tmp_path / "scan.json").unlink()
    with pytest.raises(UserError, match="no camera file"):
        PointcloudReader(META).check(tmp_path / "nocam.ply")


def test_manifest_gives_a_status_per_frame(tmp_path):
    rows = []
    frames = {"good": _cloud(), "behind": _cloud() * [1, 1, -1], "outside": _cloud() + [50.0, 0, 0],
              "few": _cloud(2)}
    for name, pts in frames.items():
        _write_cloud(tmp_path / f"{name}.ply", pts)
        rows.append({"id": name, "cloud": f"{name}.ply", "camera": "cam.json", "image": ""})
    pts = _cloud()
    pts[:] = np.nan
    np.savetxt(tmp_path / "nan.xyz", pts)
    rows.append({"id": "nan", "cloud": "nan.xyz", "camera": "cam.json", "image": ""})
    rows.append({"id": "missing", "cloud": "nowhere.ply", "camera": "cam.json", "image": ""})
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    rows.append({"id": "wrongsize", "cloud": "good.ply", "camera": "cam.json", "image": "small.png"})
    _camera(tmp_path / "cam.json")
    table = pd.DataFrame(rows)
    table["time_s"], table["status"] = [f"{0.1 * i:.1f}" for i in range(len(rows))], "raw"   # the user's own columns
    table.to_csv(tmp_path / "frames.csv", index=False)
    _predict(tmp_path / "frames.csv", tmp_path / "out")
    got = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype=str, keep_default_na=False)
    assert list(got.columns[:4]) == ["id", "time_s", "input_status", "status"]       # passed through, after the id
    assert list(got.time_s) == list(table.time_s) and set(got.input_status) == {"raw"}
    status = got.set_index("id")["status"].to_dict()
    assert status == {"good": "ok", "behind": "behind_camera", "outside": "outside_image", "few": "too_few_points",
                      "nan": "no_finite_points", "missing": "missing_file", "wrongsize": "bad_image"}
    assert (tmp_path / "out" / "good.depth.npy").exists() and not (tmp_path / "out" / "few.depth.npy").exists()


def test_manifest_structure_problems(tmp_path):
    (tmp_path / "a.csv").write_text("cloud,image\nx.ply,\n")
    with pytest.raises(UserError, match=r"lacks column\(s\) \['camera'\]"):
        readers.plan(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("id,cloud,camera\nf,x.ply,c.json\nf,y.ply,c.json\n")
    with pytest.raises(UserError, match="duplicate id"):
        readers.plan(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("")
    with pytest.raises(UserError, match="empty"):
        readers.plan(tmp_path / "c.csv")
    (tmp_path / "scan.csv").write_text("x,y,z\n0.1,0.2,3.0\n")          # points saved as CSV, not a manifest
    with pytest.raises(UserError, match=r"holds x, y, z points; save the points as \.xyz"):
        readers.plan(tmp_path / "scan.csv")
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="no point cloud files"):
        readers.plan(tmp_path / "folder")


def test_folder_input_pairs_clouds_with_a_shared_camera(tmp_path):
    for k in range(2):
        _write_cloud(tmp_path / f"f{k}.pcd", _cloud(seed=k))
    _camera(tmp_path / "camera.json")
    specs = readers.plan(tmp_path)
    assert [s.id for s in specs] == ["f0", "f1"] and all(s.camera.name == "camera.json" for s in specs)
    meta = {**META, "predict": {**SETTINGS, "write_ply": False}}
    table = _predict(tmp_path, tmp_path.parent / "out_folder", meta)
    assert table.status.tolist() == ["ok", "ok"] and not list((tmp_path.parent / "out_folder").glob("*.ply"))


def test_voxel_downsampling_and_extrinsics(tmp_path):
    world_to_cam = np.eye(4)
    world_to_cam[:3, 3] = [0.0, 0.0, -10.0]                          # the world origin is 10 m behind
    pts = _cloud() + [0.0, 0.0, 10.0]                                 # so these are 2-4 m in front
    _write_cloud(tmp_path / "s.ply", pts)
    _camera(tmp_path / "s.json", extrinsics=world_to_cam.tolist())
    spec = readers.plan(tmp_path / "s.ply")[0]
    frame = predict.load_frame(spec, {**SETTINGS, "voxel": 0.5}, 4)
    assert frame.points < 150 and 2.0 <= frame.sparse[frame.sparse > 0].min() < 4.5
    sparse = geometry.project(pts, readers.read_camera(spec.camera).K, 24, 32, world_to_cam)
    assert np.count_nonzero(sparse) > frame.in_view


def test_new_frames_round_trip_the_aloe_draw(tmp_path):
    """The workflow's prediction input: the committed frames, and a sparse depth image written as a camera-frame
    cloud + camera JSON + image that reads back to the same sparse depth image."""
    from domains.pointclouds.examples import new_frames
    K = geometry.intrinsic_matrix(*[CAMERA[k] for k in ("fx", "fy", "cx", "cy")])
    sparse = geometry.project(_cloud(), K, 24, 32)
    image = np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    folder = new_frames(tmp_path / "new", {"sparse": sparse, "image": image, "K": K})
    specs = {s.id: s for s in readers.plan(folder)}
    assert sorted(specs) == ["aloe", "frame1", "frame2"]
    frame = predict.load_frame(specs["aloe"], SETTINGS, 4)
    np.testing.assert_array_equal(frame.sparse > 0, sparse > 0)
    np.testing.assert_allclose(frame.sparse, sparse, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(frame.image, image)


def test_a_cloud_in_millimetres_is_named_where_the_png_saturates(tmp_path):
    """Depth beyond 65.535 m fills the 16-bit PNG with 65535; the frame stays ok (the .npy is exact) but its
    message says so and suggests the unit (a cloud in mm was silently ok)."""
    _write_cloud(tmp_path / "mm.ply", _cloud() * 1000)
    _camera(tmp_path / "mm.json")
    table = _predict(tmp_path / "mm.ply", tmp_path / "out")
    assert table.status.tolist() == ["ok"]
    assert "of pixels lie beyond 65.535 m, where the 16-bit millimetre PNG saturates" in table.message[0]
    assert "divide its coordinates by 1000" in table.message[0]
    _write_cloud(tmp_path / "m.ply", _cloud())
    _camera(tmp_path / "m.json")
    assert "saturates" not in str(_predict(tmp_path / "m.ply", tmp_path / "out_m").message[0])   # metres: quiet
