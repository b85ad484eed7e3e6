"""From 2D tracks to 3D joints with a trained ensemble: layout conversion, masking, frame-rate resampling,
overlapping windows, ensemble mean and calibrated uncertainty, per-frame status.

Statuses: `ok`; `missing_joints` (some joints had no usable 2D: masked, predicted from the rest, larger
uncertainty); `padded` (the person's run of frames is shorter than the model's window: edge-padded, predicted);
`no_detection` (no joint at all in that frame: no prediction, NaN).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from domains.poses.model import ensemble_sigma
from domains.poses.noise import fill_missing
from domains.poses.readers import Keypoints2D, settings_path
from domains.poses.skeleton import to_h36m
from domains.poses.training import encode_keypoints, predict_frames

log = logging.getLogger("sciformer.poses")
MAX_STRIDE = 10   # frame-number steps up to this are a lower frame rate (a detector on every k-th frame)


@dataclass
class Lifted:
    track_id: int
    frames: np.ndarray        # [N] input frame numbers
    joints_mm: np.ndarray     # [N, 17, 3] root-relative, camera frame (x right, y down, z forward), mm
    unc_mm: np.ndarray        # [N, 17] calibrated per-axis standard deviation, mm
    status: np.ndarray        # [N] str


def ensemble_lift(members: Sequence[Any], inputs: np.ndarray, seq_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs [T, 17, 3] -> (mean root-relative joints [T, 17, 3] metres, calibrated uncertainty [T, 17]:
    per-axis standard deviation in mm, 90% of validation errors within 2.50x it)."""
    outs = np.stack([predict_frames(m.model, inputs, seq_start, int(m.metadata["task"]["window"]), device=m.device)
                     for m in members])
    scale = float((members[0].metadata.get("calibration") or {}).get("sigma_scale", 1.0))
    return outs[..., :3].mean(0), (ensemble_sigma(outs) * scale * 1000.0).astype(np.float32)


def to_model_layout(keypoints: np.ndarray, scores: np.ndarray,
                    layout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N, K, 2] (NaN = missing) + [N, K] in `layout` -> H36M-17 pixels, scores and missing mask; a derived joint
    (pelvis, thorax, spine, head) is missing if any joint it is made from is."""
    missing = ~np.isfinite(keypoints).all(-1) | (scores <= 0)
    both = np.concatenate([np.nan_to_num(keypoints), np.where(missing, 0.0, scores)[..., None],
                           missing[..., None].astype(float)], -1)
    out = to_h36m(both, layout)
    return out[..., :2], out[..., 2], out[..., 3] > 1e-6


def resample_time(values: np.ndarray, n_out: int) -> np.ndarray:
    """Linear interpolation of [N, ...] onto n_out evenly spaced points spanning the same time."""
    n = len(values)
    if n == n_out or n < 2:
        return values if n == n_out else np.repeat(values[:1], n_out, 0)
    src = np.linspace(0, n - 1, n_out)
    lo = np.floor(src).astype(int).clip(0, n - 2)
    t = (src - lo).reshape(-1, *([1] * (values.ndim - 1)))
    return values[lo] * (1 - t) + values[lo + 1] * t


def frame_step(frames: np.ndarray) -> int:
    """A track's usual step between frame numbers: 2 where a detector ran on every second frame (image ids 1000,
    1002, ...), so the run is a video at half the frame rate, not a row of one-frame gaps."""
    steps = np.diff(frames)
    steps = steps[steps > 0]
    if not len(steps):
        return 1
    values, counts = np.unique(steps, return_counts=True)
    step, n = int(values[np.argmax(counts)]), int(counts.max())
    # a stride is the usual step (at least half of them, seen twice) and small; else gaps stay gaps
    return step if n >= 2 and n * 2 >= len(steps) and step <= MAX_STRIDE else 1


def segments(frames: np.ndarray, step: int = 1) -> list[slice]:
    """Runs of frame numbers `step` apart (a track's gaps split it: windows never bridge missing frames)."""
    cuts = np.flatnonzero(np.diff(frames) != step) + 1
    bounds = [0, *cuts.tolist(), len(frames)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def lift_tracks(members: Sequence[Any], data: Keypoints2D, fps: float | None = None) -> list[Lifted]:
    """Every track of the input, lifted; `fps` (the input's frame rate, if known) lets the window cover the time
    span the model was trained on (50 fps unless its metadata says otherwise)."""
    meta = members[0].metadata["task"]
    model_fps, window = float(meta["fps"]), int(meta["window"])
    fps = fps or data.fps
    if fps is None:   # CSV, NPY and most JSON do not say: the motion's speed is then a guess, said once
        log.warning("%s: frame rate unknown, read as the model's %g fps; give it with --set lift.input.fps=30 or "
                    "\"fps\" in %s", data.path, model_fps, settings_path(data.path).name)
    results = []
    for track in data.tracks:
        step = frame_step(track.frames)
        if step > 1:
            log.info("%s: track %d's frame numbers step by %d: read as every %d-th frame (%g fps)", data.path,
                     track.track_id, step, step, (fps or model_fps) / step)
        rate = (fps or model_fps) / step
        kp, sc, missing = to_model_layout(track.keypoints, track.scores, data.layout)
        status = np.where(missing.all(-1), "no_detection",
                          np.where(missing.any(-1), "missing_joints", "ok")).astype(object)
        joints = np.full((len(kp), 17, 3), np.nan, np.float32)
        unc = np.full((len(kp), 17), np.nan, np.float32)
        for seg in segments(track.frames, step):
            n = seg.stop - seg.start
            n_model = max(1, int(round(n * model_fps / rate)))
            k2, s2, m2 = (resample_time(a[seg].astype(np.float64), n_model) for a in (kp, sc, missing))
            k2, s2 = fill_missing(k2, s2, m2 > 0.5)
            inputs = encode_keypoints(k2, s2, data.image_size)
            pred, u = ensemble_lift(members, inputs, np.array([0, n_model]))
            joints[seg] = resample_time(pred, n) * 1000.0
            unc[seg] = resample_time(u, n)
            if n_model < window:
                status[seg] = np.where(status[seg] == "no_detection", "no_detection", "padded")
        joints[status == "no_detection"] = np.nan
        unc[status == "no_detection"] = np.nan
        results.append(Lifted(track.track_id, track.frames, joints, unc, status.astype(str)))
    return results
