"""Forward kinematics of pybullet's DeepMimic humanoid (`pybullet_data/humanoid/humanoid.urdf`) and its mapping
to the 17 Human3.6M joints.

The URDF is drawn at 4x scale (DeepMimic loads it with `globalScaling=0.25`), y up, x forward, +z to the
body's right. Its joints are a root (pelvis, the base), a spherical chest and neck, spherical hips, ankles
and shoulders, revolute knees and elbows (about z) and fixed wrists. A link frame sits at the joint that
moves it, so a joint's 3D position is its link frame's origin.

Human3.6M-17 (mmpose's `h36m` metadata order) from the humanoid:

    0 root        pelvis: the root link frame (the hips sit symmetrically at +-8.5 cm along z from it)
    1/4 hips, 2/5 knees, 3/6 "foot" (H36M's foot joint is the ankle): the hip, knee and ankle joints
    7 spine       the chest joint (23.6 cm above the pelvis; the humanoid's lower spine bend point)
    8 thorax      midpoint of the two shoulder joints (what mmpose's COCO->H36M conversion uses)
    9 neck_base   the nose: head sphere centre + 0.9 radius forward, 0.2 radius down (mmpose maps COCO's nose here)
    10 head       between the eyes: head sphere centre + 0.75 radius forward, 0.2 up (mmpose maps COCO's eye
                  midpoint here)
    11-13 / 14-16 left / right shoulder, elbow and wrist joints

The head sphere (radius 0.41, centre 0.7 above the neck joint in the neck frame, URDF units) is the neck
link's collision shape; the humanoid has no face, so the nose and eye points are placed on it with typical
proportions. Missing joints are thereby derived from link geometry, and they match what a COCO or MediaPipe
detector's keypoints become through mmpose's conversion, so real-video inputs and the training targets mean
the same joints.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.errors import UserError

SCALE = 0.25                   # URDF units -> metres (DeepMimic's globalScaling)
HEAD_RADIUS = 0.41             # neck link's sphere (URDF units)
HEAD_CENTRE = (0.0, 0.70, 0.0)
# points fixed in a link frame (URDF units): (link, offset)
NOSE = ("neck", (HEAD_CENTRE[0] + 0.9 * HEAD_RADIUS, HEAD_CENTRE[1] - 0.2 * HEAD_RADIUS, 0.0))
EYES = ("neck", (HEAD_CENTRE[0] + 0.75 * HEAD_RADIUS, HEAD_CENTRE[1] + 0.2 * HEAD_RADIUS, 0.0))

# DeepMimic frame layout: duration, root xyz, root quaternion (w, x, y, z), then per joint a quaternion (w, x, y, z)
# for spherical joints or one angle for revolute ones, in this order
MOTION_JOINTS = ("chest", "neck", "right_hip", "right_knee", "right_ankle", "right_shoulder", "right_elbow",
                 "left_hip", "left_knee", "left_ankle", "left_shoulder", "left_elbow")
FRAME_WIDTH = 44

# H36M-17 index -> humanoid joint (link frame origin) or a derived point
H36M_FROM_HUMANOID = ("root", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
                      "chest", "thorax", "nose", "eyes", "left_shoulder", "left_elbow", "left_wrist",
                      "right_shoulder", "right_elbow", "right_wrist")


@dataclass(frozen=True)
class Joint:
    name: str
    parent: str           # parent link
    kind: str             # fixed | spherical | revolute
    origin: np.ndarray    # [3], URDF units, in the parent link frame
    axis: np.ndarray      # [3] (revolute only)


def urdf_path() -> Path:
    try:
        import pybullet_data
    except ImportError:
        raise UserError("the poses domain needs pybullet's data files: pip install pybullet==3.2.7") from None
    path = Path(pybullet_data.getDataPath()) / "humanoid" / "humanoid.urdf"
    if not path.exists():
        raise UserError(f"{path}: not found; reinstall pybullet==3.2.7 (its wheel ships the DeepMimic humanoid)")
    return path


@lru_cache(maxsize=4)
def load_joints(path: str | None = None) -> tuple[Joint, ...]:
    """The URDF's joints in file order (parents before children)."""
    # the shipped file ends in a NUL byte, which XML parsers reject
    root = ET.fromstring(Path(path or urdf_path()).read_bytes().rstrip(b"\x00"))
    joints = []
    for j in root.findall("joint"):
        origin = j.find("origin")
        rpy = [float(v) for v in origin.get("rpy", "0 0 0").split()]
        if any(abs(v) > 1e-12 for v in rpy):
            raise ValueError(f"joint {j.get('name')}: rotated joint origins are not supported (rpy={rpy})")
        axis = j.find("axis")
        joints.append(Joint(j.get("name"), j.find("parent").get("link"), j.get("type"),
                            np.array([float(v) for v in origin.get("xyz").split()]),
                            np.array([float(v) for v in axis.get("xyz").split()]) if axis is not None else np.zeros(3)))
    return tuple(joints)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions [..., 4] as (w, x, y, z) -> rotation matrices [..., 3, 3] (normalized first)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)


def axis_angle_matrix(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotation about a unit `axis` [3] by `angle` [...] -> [..., 3, 3] (Rodrigues)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    s, c = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def split_frames(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """DeepMimic frames [N, 44] -> root position [N, 3], root quaternion [N, 4] (w, x, y, z), and per joint of
    MOTION_JOINTS a quaternion [N, 4] or an angle [N]."""
    frames = np.asarray(frames, float)
    if frames.ndim != 2 or frames.shape[1] != FRAME_WIDTH:
        raise ValueError(f"DeepMimic frames must be [N, {FRAME_WIDTH}], got {frames.shape}")
    col, values = 8, {}
    for name in MOTION_JOINTS:
        width = 1 if name.endswith(("knee", "elbow")) else 4
        values[name] = frames[:, col] if width == 1 else frames[:, col:col + 4]
        col += width
    return frames[:, 1:4], frames[:, 4:8], values


def forward_kinematics(root_pos: np.ndarray, root_quat: np.ndarray, joint_values: dict[str, np.ndarray],
                       joints: tuple[Joint, ...] | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """World positions (metres) and rotations of every link frame: ({link: [N, 3]}, {link: [N, 3, 3]})."""
    joints = joints or load_joints()
    n = len(root_pos)
    pos = {"base": np.asarray(root_pos, float)}
    rot = {"base": quat_to_matrix(np.asarray(root_quat, float))}
    for j in joints:
        parent_r = rot[j.parent]
        pos[j.name] = pos[j.parent] + SCALE * parent_r @ j.origin
        if j.kind == "fixed":
            local = np.broadcast_to(np.eye(3), (n, 3, 3))
        elif j.kind == "spherical":
            local = quat_to_matrix(joint_values[j.name])
        elif j.kind == "revolute":
            local = axis_angle_matrix(j.axis, np.asarray(joint_values[j.name], float))
        else:
            raise ValueError(f"joint {j.name}: unsupported type {j.kind}")
        rot[j.name] = parent_r @ local
    return pos, rot


def point_in_link(pos: dict, rot: dict, link: str, offset) -> np.ndarray:
    return pos[link] + SCALE * rot[link] @ np.asarray(offset, float)


def h36m_joints(frames: np.ndarray) -> np.ndarray:
    """DeepMimic frames [N, 44] -> Human3.6M-17 joint positions [N, 17, 3] in metres (world frame, y up)."""
    root_pos, root_quat, values = split_frames(frames)
    pos, rot = forward_kinematics(root_pos, root_quat, values)
    derived = {"thorax": 0.5 * (pos["left_shoulder"] + pos["right_shoulder"]),
               "nose": point_in_link(pos, rot, *NOSE), "eyes": point_in_link(pos, rot, *EYES)}
    return np.stack([derived[name] if name in derived else pos[name] for name in H36M_FROM_HUMANOID], axis=1)
