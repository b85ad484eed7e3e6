"""The DeepMimic motion-capture clips shipped in pybullet's wheel (`pybullet_data/data/motions/humanoid3d_*.txt`),
resampled to a fixed frame rate by interpolating the joint rotations (slerp) rather than the joint positions, so
bone lengths stay exact at every resampled frame and a speed change is a change of the resampling step."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.errors import UserError
from domains.poses.humanoid import FRAME_WIDTH, MOTION_JOINTS, h36m_joints

PREFIX = "humanoid3d_"


def motions_dir() -> Path:
    try:
        import pybullet_data
    except ImportError:
        raise UserError("the poses domain needs pybullet's motion clips: pip install pybullet==3.2.7") from None
    return Path(pybullet_data.getDataPath()) / "data" / "motions"


def clip_names() -> list[str]:
    return sorted(p.stem[len(PREFIX):] for p in motions_dir().glob(f"{PREFIX}*.txt"))


def clip_path(name: str) -> Path:
    path = motions_dir() / f"{PREFIX}{name}.txt"
    if not path.exists():
        raise UserError(f"unknown motion clip {name!r}: {path} does not exist; known clips: {', '.join(clip_names())}")
    return path


@lru_cache(maxsize=32)
def load_frames(name: str) -> np.ndarray:
    """The clip's keyframes [N, 44]: duration, root position, root quaternion, joint rotations."""
    frames = np.asarray(json.loads(clip_path(name).read_text())["Frames"], float)
    if frames.ndim != 2 or frames.shape[1] != FRAME_WIDTH:
        raise UserError(f"{clip_path(name)}: frames must have {FRAME_WIDTH} values, got shape {frames.shape}")
    return frames


def _quat_columns() -> list[int]:
    cols, col = [4], 8
    for name in MOTION_JOINTS:
        if name.endswith(("knee", "elbow")):
            col += 1
        else:
            cols.append(col)
            col += 4
    return cols


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions [N, 4] at fractions t [N] along the shorter arc."""
    q0 = q0 / np.linalg.norm(q0, axis=-1, keepdims=True)
    q1 = q1 / np.linalg.norm(q1, axis=-1, keepdims=True)
    dot = np.sum(q0 * q1, -1)
    q1 = np.where(dot[:, None] < 0, -q1, q1)
    dot = np.abs(dot).clip(-1, 1)
    theta = np.arccos(dot)
    small = theta < 1e-6
    s = np.sin(theta)
    w0 = np.where(small, 1 - t, np.sin((1 - t) * theta) / np.where(small, 1, s))
    w1 = np.where(small, t, np.sin(t * theta) / np.where(small, 1, s))
    out = w0[:, None] * q0 + w1[:, None] * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def resample(frames: np.ndarray, fps: float, speed: float = 1.0) -> np.ndarray:
    """Keyframes with their own durations -> frames at `fps` of the motion played `speed` times faster.
    Root position and revolute angles interpolate linearly, quaternions by slerp."""
    durations = frames[:-1, 0]
    if np.any(durations <= 0):
        raise ValueError("keyframe durations must be positive")
    times = np.concatenate([[0.0], np.cumsum(durations)])
    step = speed / fps
    sample = np.arange(0.0, times[-1] + 1e-9, step)
    idx = np.clip(np.searchsorted(times, sample, side="right") - 1, 0, len(frames) - 2)
    t = np.clip((sample - times[idx]) / durations[idx], 0.0, 1.0)
    a, b = frames[idx], frames[idx + 1]
    out = a + (b - a) * t[:, None]                     # linear for everything, then slerp the quaternions
    for c in _quat_columns():
        out[:, c:c + 4] = slerp(a[:, c:c + 4], b[:, c:c + 4], t)
    out[:, 0] = 1.0 / fps
    return out


def clip_joints(name: str, fps: float, speed: float = 1.0) -> np.ndarray:
    """Human3.6M-17 world joints [N, 17, 3] (metres, y up) of a clip at `fps`, played at `speed`."""
    return h36m_joints(resample(load_frames(name), fps, speed))
