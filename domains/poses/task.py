"""The lift task on the core's task contract: 2D keypoints (JSON/CSV/NPY, or a video) -> root-relative 3D joints
in millimetres with a calibrated per-joint uncertainty. The hooks are thin: the science lives in `pipeline`
(prepare, calibrate), `training`, `model`, `evaluation`, `readers`, `lifting`, `writers` and `report`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.task import BadInput, Prediction, Task
from domains.poses.data import DATA_KEYS

DATA = Path(__file__).resolve().parents[2] / "data" / "poses"
EXAMPLE = DATA / "trial2_cam02_mediapipe.json"   # MediaPipe keypoints of a real Pose2Sim demo clip (2 people)
OUTPUTS = (".csv", ".parquet", ".json", ".npy")
# seconds-scale run on the real data (a walk test clip, a run validation clip, few training clips, tiny models)
SMOKE = ("lift.cameras.train=1", "lift.cameras.val=1", "lift.cameras.test=1", "lift.augment.speeds=[1.0]",
         "lift.augment.bodies=1", "lift.test_clips=[walk]", "lift.val_clips=[run]",
         "lift.exclude_clips=[cartwheel, crawl, getup_faceup, getup_facedown, roll, spin, backflip, dance_b]",
         "lift.model.window=9", "lift.mmpose_videopose3d_27.epochs=1", "lift.mmpose_videopose3d_27.channels=16",
         "lift.mlp_lifter.epochs=1", "lift.mlp_lifter.channels=16", "lift.real.clips=[trial1]",
         "lift.speed_frames=20", "encoder.d_model=16", "encoder.n_heads=2", "encoder.n_layers=1", "encoder.d_ff=16",
         "train.epochs=1", "train.max_steps=3", "train.batch_size=8")


class LiftTask(Task):
    name = "lift"
    description = "2D keypoints or video -> 3D joints (mm, root-relative) with per-joint uncertainty"
    smoke_overrides = SMOKE
    default_output = "predictions.csv"
    prediction_settings = ("lift.input",)     # how to read the inputs: image size, layout, fps, people
    # one input file is one item (its tracks inside): nothing to spread over workers, and the output's format
    # (table, JSON, array) is read from the output set, which a worker does not get
    parallel_predict = False
    evaluation_only = ("lift.baselines", "lift.mmpose_videopose3d_27", "lift.mlp_lifter", "lift.peer_jobs",
                       "lift.speed_frames")
    # what the prepared splits depend on; the flip augmentation is drawn at training time, so it may change
    data_settings = (*(f"lift.{k}" for k in DATA_KEYS if k != "augment"), "lift.augment.speeds",
                     "lift.augment.bodies", "lift.augment.bone_spread")

    def check_data(self, cfg) -> list[str]:
        """The clips the split names exist and belong to one split each."""
        from core.errors import UserError
        from domains.poses.data import split_clips
        try:
            split_clips(cfg["lift"])
        except UserError as exc:
            return [str(exc)]
        return []

    # -- pipeline ----------------------------------------------------------------------------------------
    def prepare(self, cfg, out_dir):
        from domains.poses import pipeline
        return pipeline.prepare(cfg, out_dir)

    def build_training(self, cfg, prepared, stage, init, seed):
        """Our lifter on the prepared windows; with `init` (a trained run, e.g. HoT fine-tuning from the
        unpruned model) member k starts from that run's member k (non-strict: new modules start fresh)."""
        from core.checkpoint import load_weights
        from core.runs import member_dirs
        from domains.poses import data
        from domains.poses.training import build_training, encode_split
        settings = self.train_settings(cfg, stage)
        values = cfg.to_dict()
        training = build_training(values["lift"], values["encoder"], encode_split(data.load(prepared, "train")),
                                  encode_split(data.load(prepared, "val")), int(settings["batch_size"]))
        if init is not None:
            members = member_dirs(Path(init))
            load_weights(training.model, members[(seed - int(cfg["seed"])) % len(members)], strict=False)
        return training

    def build_model(self, metadata):
        from domains.poses.model import build_model
        return build_model(metadata)

    def calibrate(self, cfg, prepared, members):
        from domains.poses import data, pipeline
        from domains.poses.training import encode_split
        return pipeline.calibrate(members, encode_split(data.load(prepared, "val")))

    def evaluate(self, cfg, prepared, members):
        from domains.poses.evaluation import evaluate
        return evaluate(cfg, prepared, members, self.artifacts_dir)

    # -- prediction -------------------------------------------------------------------------------------
    def output_formats(self, metadata: Mapping[str, Any]) -> tuple[str, ...]:
        return OUTPUTS

    def reader(self, metadata):
        from domains.poses.prediction_input import KeypointsReader
        cfg = self.prediction_config
        return KeypointsReader(cfg.get("lift.input") if cfg is not None else None)

    def predict(self, members, batch, out):
        """Every track lifted. A table (.csv/.parquet): one row per frame x track x joint with a status; .json:
        mmpose-style instances with keypoints_3d; .npy: [frames, 17, 4] (x, y, z, uncertainty) + statuses in
        `<name>.status.json` (aligned with the array's frame axis, with the first input frame). Each beside a
        figure of a few 3D skeletons (`<name>.skeleton.png`)."""
        from domains.poses import writers
        from domains.poses.lifting import lift_tracks
        lifted = lift_tracks(members, batch.data)
        statuses = np.concatenate([t.status for t in lifted])
        files: dict[str, Any] = {}
        drawable = next((t for t in lifted if (t.status != "no_detection").any()), None)
        if drawable is not None:
            files[".skeleton.png"] = lambda path: writers.skeleton_figure(drawable, path, title=batch.ids[0])
        suffix = out.target.suffix.lower()
        if suffix == ".json":
            files[""] = json.dumps(writers.to_json(lifted)) + "\n"
        elif suffix == ".npy":
            files[""] = writers.to_array(lifted)
            files[".status.json"] = json.dumps(writers.array_statuses(lifted)) + "\n"
        else:
            table = writers.to_table(lifted)
            return Prediction(table=table, predicted=(table["status"] != "no_detection").to_numpy(), files=files)
        where = [f"track {t.track_id}, frame {f}" for t in lifted for f in t.frames]
        return Prediction(files=files, status=statuses.tolist(), predicted=statuses != "no_detection", locations=where)

    # -- tests and reports ------------------------------------------------------------------------------
    def example_inputs(self, folder):
        """Good: a real demo clip's MediaPipe keypoints (2 people, 100 frames). Bad: 25 keypoints per person."""
        folder = Path(folder)
        good = folder / "keypoints.json"
        shutil.copy(EXAMPLE, good)
        bad = folder / "openpose_body25.json"
        frame = {"frame_id": 0, "instances": [{"keypoints": [[100.0 + j, 200.0 + j] for j in range(25)],
                                                "keypoint_scores": [0.9] * 25}]}
        bad.write_text(json.dumps({"image_size": [1920, 1080], "instance_info": [frame]}))
        return good, bad, "25 joints per person"

    def bad_inputs(self, folder):
        """Errors for what cannot be lifted; statuses for frames that can be, with care (missing joints masked,
        a sequence shorter than the receptive field edge-padded, a frame without anyone left empty)."""
        folder = Path(folder)
        example = json.loads(EXAMPLE.read_text())
        frames = example["instance_info"]

        def save(name: str, instance_info, **top) -> Path:
            path = folder / name
            path.write_text(json.dumps({**{k: v for k, v in example.items() if k != "instance_info"}, **top,
                                        "instance_info": instance_info}))
            return path

        holes = json.loads(json.dumps(frames[:40]))
        for f in holes[10:20]:
            for inst in f["instances"]:
                inst["keypoints"][25] = [None, None]       # a knee lost for ten frames
        for inst in holes[30]["instances"]:
            inst["keypoints"] = [[None, None]] * 33        # nobody usable in frame 30
        mixed = json.loads(json.dumps(frames[:2]))
        mixed[1]["instances"][0]["keypoints"] = mixed[1]["instances"][0]["keypoints"][:17]
        mixed[1]["instances"][0]["keypoint_scores"] = mixed[1]["instances"][0]["keypoint_scores"][:17]
        no_size = {k: v for k, v in example.items() if k not in ("image_size", "instance_info")}
        (folder / "no_size.json").write_text(json.dumps({**no_size, "instance_info": frames[:30]}))
        ambiguous = np.zeros((30, 17, 3))      # head points 0.15 body heights from the nose: COCO or H36M?
        ambiguous[:, 1:5, 0], ambiguous[:, 5:, 1], ambiguous[..., 2] = 15.0, np.linspace(0, 100, 12), 0.9
        np.save(folder / "ambiguous.npy", ambiguous)
        (folder / "ambiguous.settings.json").write_text(json.dumps({"image_size": [640, 480]}))
        np.save(folder / "one_dim.npy", np.zeros(51))
        (folder / "frame_text.csv").write_text("frame,joint,x,y,score,width,height\n0,0,1,2,0.9,640,480\n"
                                               "one,1,1,2,0.9,640,480\n")
        (folder / "bad_settings.npy").write_bytes((folder / "ambiguous.npy").read_bytes())
        (folder / "bad_settings.settings.json").write_text(json.dumps({"image_size": [640, 480], "zoom": 2}))
        (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
        return [BadInput("missing_joints", save("holes.json", holes), status="missing_joints"),
                BadInput("nobody_in_a_frame", folder / "holes.json", status="no_detection"),
                BadInput("shorter_than_window", save("short.json", frames[:4]), status="padded"),
                BadInput("mixed_layouts", save("mixed.json", mixed), "mixed layouts"),
                BadInput("unknown_layout", save("unknown.json", frames[:30], meta_info={"layout": "openpose"}),
                         "unknown layout"),
                BadInput("missing_image_size", folder / "no_size.json", "image size is missing"),
                BadInput("coco_or_h36m", folder / "ambiguous.npy", "cannot tell whether"),
                BadInput("wrong_shape", folder / "one_dim.npy", "expected [frames, joints, 2 or 3]"),
                BadInput("frame_not_integer", folder / "frame_text.csv", "frame must be an integer"),
                BadInput("unknown_setting", folder / "bad_settings.npy", "unknown setting"),
                BadInput("corrupt_video", folder / "corrupt.mp4", "cannot decode")]

    def report_figures(self, predictions, metrics, out_dir):
        from domains.poses.report import figures
        return figures(predictions, metrics, out_dir, self.artifacts_dir)
