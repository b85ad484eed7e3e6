"""Example inputs for prediction (the committed data/pointclouds/ files, and the contract test's inputs):
frames rendered from the test split's meshes (never seen in training), their simulated sensor points in
world coordinates, the camera JSON (intrinsics + world-to-camera extrinsics) and the image, plus a CSV
manifest with one deliberately bad row (a cloud file that does not exist).

    python -m domains.pointclouds.examples data/pointclouds
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import open3d as o3d
import pandas as pd
from PIL import Image

from core.io import atomic_path
from domains.pointclouds import scenes, sensors
from domains.pointclouds.geometry import backproject
from domains.pointclouds.meshes import sources_of

COMMITTED = Path(__file__).resolve().parents[2] / "data" / "pointclouds"
SETTINGS = {"scale": [0.8, 1.2], "objects": [3, 3], "primitives": [1, 1]}
FRAMES = (("frame1", "lidar32"), ("frame2", "tof"))


def camera_json(K: np.ndarray, width: int, height: int, extrinsic: np.ndarray) -> dict:
    return {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
            "width": width, "height": height, "extrinsics": np.round(extrinsic, 9).tolist(),
            "extrinsics_convention": "world_to_camera"}


def write_examples(folder: Path, seed: int = 2024, height: int = 96, width: int = 128,
                   groups=("airplane", "bone")) -> Path:
    """Write the example frames and `frames.csv` into folder; returns the manifest path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scene = scenes.compose(rng, sources_of(list(groups)), SETTINGS, n_views=len(FRAMES))
    rows = []
    for (name, pattern), ext in zip(FRAMES, scene.cameras):
        K = scenes.camera_intrinsics(rng, height, width, (45, 55))
        image, depth = scenes.render(scene, K, ext, height, width, rng, max_depth=25.0)
        cam_points = sensors.simulate(pattern, sensors.scene_source(scene, ext), depth, image, K, rng)
        world = (cam_points.astype(np.float64) - ext[:3, 3]) @ ext[:3, :3]     # camera -> world
        with atomic_path(folder / f"{name}.ply", suffix=".ply") as tmp:
            o3d.io.write_point_cloud(str(tmp), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(world)))
        with atomic_path(folder / f"{name}.json", suffix=".json") as tmp:
            tmp.write_text(json.dumps(camera_json(K, width, height, ext), indent=1) + "\n")
        with atomic_path(folder / f"{name}.png", suffix=".png") as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
        with atomic_path(folder / f"{name}.truth.png", suffix=".png") as tmp:   # true depth, 16-bit mm
            Image.fromarray(np.clip(np.rint(depth * 1000), 0, 65535).astype(np.uint16)).save(tmp, format="PNG")
        rows.append({"id": name, "cloud": f"{name}.ply", "camera": f"{name}.json", "image": f"{name}.png"})
    rows.append({"id": "missing", "cloud": "not_there.ply", "camera": "frame1.json", "image": ""})
    manifest = folder / "frames.csv"
    with atomic_path(manifest, suffix=".csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return manifest



def bad_input_cases(folder: Path, examples: Path) -> list:
    """The task's own bad inputs (tests/test_bad_input.py runs each through `sciformer predict`): errors for
    a single bad cloud, statuses for bad rows of a manifest."""
    from core.task import BadInput
    folder.mkdir(parents=True, exist_ok=True)
    camera = json.loads((examples / "frame1.json").read_text())
    copy = lambda name, target: (folder / target).write_bytes((examples / name).read_bytes())   # noqa: E731
    copy("frame1.ply", "good.ply")
    copy("frame1.json", "good.json")
    (folder / "corrupt.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    copy("frame1.json", "corrupt.json")
    copy("frame1.ply", "badcam.ply")
    (folder / "badcam.json").write_text(json.dumps({**camera, "fx": -1}))
    copy("frame1.ply", "small.ply")
    copy("frame1.json", "small.json")
    Image.new("RGB", (64, 48)).save(folder / "small.png")
    nan = np.full((50, 3), np.nan)
    np.savetxt(folder / "nan.xyz", nan)
    few = (np.array([[0.0, 0.0, 2.0], [0.1, 0.0, 2.0]]) - np.array(camera["extrinsics"])[:3, 3]) \
        @ np.array(camera["extrinsics"])[:3, :3]
    np.savetxt(folder / "few.xyz", few)
    pd.DataFrame([{"id": "ok", "cloud": "good.ply", "camera": "good.json"},
                  {"id": "gone", "cloud": "not_there.ply", "camera": "good.json"},
                  {"id": "nan", "cloud": "nan.xyz", "camera": "good.json"},
                  {"id": "few", "cloud": "few.xyz", "camera": "good.json"}]).to_csv(folder / "frames.csv", index=False)
    (folder / "nocloud.csv").write_text("file,camera\ngood.ply,good.json\n")
    return [BadInput("corrupt_cloud", folder / "corrupt.ply", "truncated or corrupt PLY"),
            BadInput("invalid_camera", folder / "badcam.ply", "invalid camera"),
            BadInput("image_size_mismatch", folder / "small.ply", "the intrinsics must belong to this image size"),
            BadInput("manifest_missing_file", folder / "frames.csv", status="missing_file"),
            BadInput("manifest_non_finite_cloud", folder / "frames.csv", status="no_finite_points"),
            BadInput("manifest_too_few_points", folder / "frames.csv", status="too_few_points"),
            BadInput("manifest_without_cloud_column", folder / "nocloud.csv", "lacks column(s) ['cloud']")]


def new_frames(folder: Path, aloe: dict | None = None) -> Path:
    """The workflow's prediction input (`prepared:new_frames`): the committed example frames and, when given
    ({"sparse", "image", "K"}: one simulated sensor draw on the real Aloe scene), the Aloe frame as a user
    would bring it: a .ply in the camera frame, a camera JSON without extrinsics and the image."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, _ in FRAMES:
        for suffix in (".ply", ".json", ".png"):
            (folder / f"{name}{suffix}").write_bytes((COMMITTED / f"{name}{suffix}").read_bytes())
    if aloe is not None:
        h, w = aloe["sparse"].shape
        points = backproject(aloe["sparse"], aloe["K"]).astype(np.float64)
        with atomic_path(folder / "aloe.ply", suffix=".ply") as tmp:
            o3d.io.write_point_cloud(str(tmp), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)))
        camera = camera_json(aloe["K"], w, h, np.eye(4))
        del camera["extrinsics"], camera["extrinsics_convention"]   # the points are in the camera frame
        with atomic_path(folder / "aloe.json", suffix=".json") as tmp:
            tmp.write_text(json.dumps(camera, indent=1) + "\n")
        with atomic_path(folder / "aloe.png", suffix=".png") as tmp:
            Image.fromarray(aloe["image"]).save(tmp, format="PNG")
    return folder


if __name__ == "__main__":
    print(write_examples(Path(sys.argv[1] if len(sys.argv) > 1 else "data/pointclouds")))
