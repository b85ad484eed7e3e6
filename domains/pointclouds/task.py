"""The pointclouds domain's task on the core contract (core.task): `depth`, sparse points + camera (+ image)
-> dense depth and its uncertainty (a folder of per-frame files, one table row per frame)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from core.errors import UserError
from core.readers import Batch, Reader
from core.task import BadInput, Prediction, Task

SMOKE = ("scenes.height=48", "scenes.width=64", "scenes.views.train=6", "scenes.views.val=3",
         "scenes.views.test=3", "scenes.views_per_scene=3", "sensors.patterns=[lidar32, sfm]", "aloe.use=false",
         "model.point_hidden=8", "model.decoder_hidden=8", "evaluate.tune_frames=2", "encoder.d_model=16",
         "encoder.n_heads=2", "encoder.n_layers=1", "encoder.d_ff=32", "train.epochs=1", "train.max_steps=3",
         "train.batch_size=4", "train.progress=false")
EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "pointclouds"


class PointcloudReader(Reader):
    """A cloud file (camera and image beside it), a folder of them, or a CSV manifest (see readers.py). A
    single cloud is read and projected in `check`: its problems are errors before any model loads; in
    folders and manifests they are per-frame statuses."""

    def __init__(self, meta: Mapping[str, Any]):
        from domains.pointclouds.readers import CLOUD_FORMATS
        self.meta = meta
        self.formats = (*CLOUD_FORMATS, "/", ".csv")

    def check(self, path: Path) -> None:
        from domains.pointclouds.predict import FrameProblem, load_frame
        from domains.pointclouds.readers import CLOUD_FORMATS, plan
        specs = plan(Path(path))
        if Path(path).suffix.lower() in CLOUD_FORMATS:
            try:
                load_frame(specs[0], self.meta["predict"], int(self.meta["min_points"]))
            except FrameProblem as problem:
                raise UserError(str(problem) if str(path) in str(problem) else f"{path}: {problem}") from None

    def input_files(self, path: Path) -> list[Path]:
        from domains.pointclouds.readers import plan
        named = [f for s in plan(Path(path)) for f in (s.cloud, s.camera, s.image) if f is not None]
        return [Path(path), *named]

    def count(self, path: Path) -> int | None:
        from domains.pointclouds.readers import plan
        return len(plan(Path(path)))

    def batches(self, path: Path, size: int) -> Iterator[Batch]:
        from domains.pointclouds.readers import plan
        specs = plan(Path(path))
        for start in range(0, len(specs), size):
            part = specs[start:start + size]
            yield Batch(part, [s.id for s in part], start)


class DepthTask(Task):
    data_settings = ("scenes", "sensors", "aloe")
    name = "depth"
    description = "sparse points (LiDAR, ToF, SfM) + camera [+ image] -> dense depth and per-pixel uncertainty"
    smoke_overrides = SMOKE
    default_output = "depth"
    prediction_settings = ("predict",)

    def prepare(self, cfg, out_dir: Path) -> dict[str, str]:
        from domains.pointclouds.data import prepare
        return prepare(cfg, Path(out_dir), bool(cfg.get("train.progress", True)))

    def build_training(self, cfg, prepared, stage, init, seed):
        from domains.pointclouds.training import build_task
        return build_task(cfg, Path(prepared))

    def build_model(self, metadata):
        from domains.pointclouds.model import build
        return build(metadata)

    def evaluate(self, cfg, prepared, members):
        from domains.pointclouds.evaluation import evaluate
        return evaluate(cfg, Path(prepared), members, bool(cfg.get("train.progress", True)))

    def with_command_settings(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The model's metadata with its `predict` settings (stored at training) overridden by those the predict
        command gives (`--set predict.voxel=0.05`, --config): they change how a new cloud is read and what is
        written, not the model."""
        return {**metadata, "predict": {**metadata["predict"], **self.command_settings("predict")}}

    def output_formats(self, metadata):
        return ("/",)

    def reader(self, metadata):
        return PointcloudReader(self.with_command_settings(metadata))

    def predict(self, members, batch, out):
        from domains.pointclouds.predict import predict_specs
        meta = self.with_command_settings(members[0].metadata["task"])
        rows, files = predict_specs([m.model for m in members], meta, batch.data)
        return Prediction(table=pd.DataFrame(rows), files=files)

    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        """Good: a folder with the committed example frame 1 (LiDAR) and a frame whose cloud is corrupt (its
        status: unreadable_cloud). Bad: that frame's cloud with every point behind the camera."""
        import open3d as o3d

        from domains.pointclouds.readers import read_cloud
        folder = Path(folder)
        good = folder / "frames"
        good.mkdir(parents=True, exist_ok=True)
        for suffix in (".ply", ".json", ".png"):
            (good / f"frame1{suffix}").write_bytes((EXAMPLES / f"frame1{suffix}").read_bytes())
        (good / "broken.ply").write_text("ply\nthis header is not a header\n")
        (good / "broken.json").write_bytes((EXAMPLES / "frame1.json").read_bytes())
        bad = folder / "behind.ply"
        points, _ = read_cloud(EXAMPLES / "frame1.ply")
        camera = json.loads((EXAMPLES / "frame1.json").read_text())
        ext = np.array(camera["extrinsics"])
        cam = points @ ext[:3, :3].T + ext[:3, 3]
        mirrored = (cam * [1, 1, -1] - ext[:3, 3]) @ ext[:3, :3]          # the same points behind the camera
        o3d.io.write_point_cloud(str(bad), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(mirrored)))
        (folder / "behind.json").write_bytes((EXAMPLES / "frame1.json").read_bytes())
        return good, bad, "behind the camera"

    def bad_inputs(self, folder: Path) -> list[BadInput]:
        from domains.pointclouds.examples import bad_input_cases
        return bad_input_cases(Path(folder), EXAMPLES)

    def report_figures(self, predictions, metrics, out_dir):
        from domains.pointclouds.report import figures
        return figures(predictions, metrics, Path(out_dir))
