"""Keypoint layouts from mmpose's dataset metadata (Human3.6M-17, COCO-17) plus MediaPipe's 33 landmarks, and
the conversions to the Human3.6M-17 layout the lifter works in (COCO -> H36M is mmpose's own
`convert_keypoint_definition`; MediaPipe -> COCO picks MediaPipe's 17 COCO-named landmarks).

Layout detection for undeclared 17-joint input: in COCO the first five points (nose, eyes, ears) sit within a
head's width of each other; in H36M points 1-4 are a hip, knee, foot and the other hip, spread over the leg.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

LAYOUTS = ("h36m", "coco", "mediapipe")
N_JOINTS = {"h36m": 17, "coco": 17, "mediapipe": 33}

# MediaPipe Pose landmark index of each COCO-17 keypoint (nose, eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles); MediaPipe's eyes are its "left_eye"/"right_eye" centres (2, 5)
MEDIAPIPE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
MEDIAPIPE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index")


@lru_cache(maxsize=4)
def metainfo(dataset: str) -> dict:
    """mmpose's parsed metadata of `h36m` or `coco` (names, flip_indices, skeleton_links, sigmas...)."""
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    with warnings.catch_warnings():   # "config file does not exist, a matched one is used": expected
        warnings.simplefilter("ignore", UserWarning)
        return parse_pose_metainfo(dict(from_file=f"configs/_base_/datasets/{dataset}.py"))


def joint_names(layout: str) -> list[str]:
    if layout == "mediapipe":
        return list(MEDIAPIPE_NAMES)
    info = metainfo(layout)
    return [info["keypoint_id2name"][i] for i in range(info["num_keypoints"])]


def h36m_flip_indices() -> list[int]:
    return list(metainfo("h36m")["flip_indices"])


def h36m_links() -> list[tuple[int, int]]:
    return [tuple(map(int, link)) for link in metainfo("h36m")["skeleton_links"]]


def to_h36m(keypoints: np.ndarray, layout: str) -> np.ndarray:
    """[N, K, C] in `layout` -> [N, 17, C] Human3.6M order (C may include a score channel, converted alike:
    a derived joint's score is the mean of its sources' scores, as mmpose averages them)."""
    from mmpose.apis.inference_3d import convert_keypoint_definition
    if layout == "h36m":
        return keypoints
    if layout == "mediapipe":
        keypoints = keypoints[:, list(MEDIAPIPE_TO_COCO)]
    return convert_keypoint_definition(keypoints, "coco", "h36m")


def detect_layout(keypoints: np.ndarray, valid: np.ndarray | None = None) -> str | None:
    """Guess the layout of [N, K, 2] keypoints: by joint count (33 -> mediapipe), and for 17 joints by how far
    points 1-4 lie from point 0 relative to the body's height. None when it cannot tell."""
    k = keypoints.shape[1]
    if k == 33:
        return "mediapipe"
    if k != 17:
        return None
    valid = np.isfinite(keypoints).all(-1) if valid is None else valid
    spreads = []
    for f in range(len(keypoints)):
        ok = valid[f]
        if ok[:5].sum() < 3 or ok.sum() < 8:
            continue
        pts = keypoints[f][ok]
        height = np.ptp(pts[:, 1]) + 1e-9
        head = keypoints[f, 1:5][ok[1:5]]
        spreads.append(np.max(np.linalg.norm(head - keypoints[f, 0], axis=-1)) / height)
    if not spreads:
        return None
    spread = float(np.median(spreads))
    if spread < 0.12:
        return "coco"
    if spread > 0.2:
        return "h36m"
    return None
