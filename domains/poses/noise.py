"""What a 2D detector does to perfect projections, and the training-only augmentations of 3D motion.

Detector noise (seeded, per sequence), in units of the person's 2D bounding-box height s (per frame):
- Gaussian jitter: sigma = jitter * s, 1.5x on wrists and ankles (detectors are least sure of extremities);
- outliers: with probability `outlier` a joint jumps by 0.1-0.3 s in a random direction; its score is 0.2-0.6;
- left/right swaps: with probability `swap` per frame one limb pair (hips..feet or shoulders..wrists) is swapped,
  scores 0.3-0.7 (the classic failure on side views);
- missing joints: with probability `missing` a joint is lost for a short burst (1-5 frames); it gets score 0 and
  the mean position of the frame's other joints, exactly what prediction does with NaN/missing user input;
- scores of normal joints are 0.75-1, halved for joints outside the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXTREMITIES = (3, 6, 13, 16)          # H36M feet (ankles) and wrists
LIMB_PAIRS = (((1, 2, 3), (4, 5, 6)), ((14, 15, 16), (11, 12, 13)))   # (right, left) legs, arms


@dataclass(frozen=True)
class NoiseModel:
    jitter: float = 0.01
    outlier: float = 0.01
    swap: float = 0.005
    missing: float = 0.01

    @classmethod
    def from_config(cls, section: dict) -> "NoiseModel":
        return cls(**{k: float(section[k]) for k in ("jitter", "outlier", "swap", "missing")})


def bbox_height(points: np.ndarray) -> np.ndarray:
    """[N, J, 2] -> [N]: the person's 2D bounding-box height (at least 1 pixel)."""
    return np.maximum(points[..., 1].max(-1) - points[..., 1].min(-1), 1.0)


def detect(points: np.ndarray, size: tuple[int, int], model: NoiseModel,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Perfect projections [N, J, 2] -> (noisy keypoints [N, J, 2], scores [N, J]) like a detector's."""
    n, j, _ = points.shape
    s = bbox_height(points)[:, None, None]
    scale = np.ones((1, j, 1))
    scale[0, list(EXTREMITIES)] = 1.5
    out = points + rng.normal(0, 1, points.shape) * model.jitter * s * scale
    scores = rng.uniform(0.75, 1.0, (n, j))
    outside = (points[..., 0] < 0) | (points[..., 0] >= size[0]) | (points[..., 1] < 0) | (points[..., 1] >= size[1])
    scores[outside] *= 0.5
    jump = rng.random((n, j)) < model.outlier
    angle = rng.uniform(0, 2 * np.pi, (n, j))
    radius = rng.uniform(0.1, 0.3, (n, j)) * s[..., 0]
    out[jump] += np.stack([np.cos(angle), np.sin(angle)], -1)[jump] * radius[jump][:, None]
    scores[jump] = rng.uniform(0.2, 0.6, int(jump.sum()))
    for f in np.flatnonzero(rng.random(n) < model.swap):
        right, left = LIMB_PAIRS[rng.integers(len(LIMB_PAIRS))]
        out[f, list(right) + list(left)] = out[f, list(left) + list(right)]
        scores[f, list(right) + list(left)] = rng.uniform(0.3, 0.7, 2 * len(right))
    lost = np.zeros((n, j), bool)
    for f, k in zip(*np.nonzero(rng.random((n, j)) < model.missing)):
        lost[f:f + rng.integers(1, 6), k] = True
    return fill_missing(out, np.where(lost, 0.0, scores), lost)


def fill_missing(points: np.ndarray, scores: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joints marked missing [N, J] get score 0 and the mean of the frame's present joints (the frame centre
    when none is present)."""
    points = points.copy()
    scores = np.where(missing, 0.0, scores)
    present = ~missing
    count = present.sum(-1, keepdims=True)
    safe = np.where(present[..., None], np.nan_to_num(points), 0.0)
    centre = safe.sum(-2) / np.maximum(count, 1)
    centre = np.where(count > 0, centre, 0.0)
    points[missing] = np.broadcast_to(centre[:, None, :], points.shape)[missing]
    return points, scores


# -- augmentation of 3D motion (training split only) -----------------------------------------------------------
H36M_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
# bones scaled together (both sides alike): thigh, shin, spine, neck/head, upper arm, forearm, hip and shoulder width
BONE_GROUPS = (((1, 2), (4, 5)), ((2, 3), (5, 6)), ((0, 7), (7, 8)), ((8, 9), (9, 10)), ((11, 12), (14, 15)),
               ((12, 13), (15, 16)), ((0, 1), (0, 4)), ((8, 11), (8, 14)))


def scale_bones(joints: np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
    """World joints [N, 17, 3] -> the same motion of a body with each bone group scaled by 1 +- spread (and the
    whole body by 1 +- spread): each joint is rebuilt from its parent plus its scaled bone vector."""
    factor = np.ones(17)
    for group in BONE_GROUPS:
        f = 1.0 + rng.uniform(-spread, spread)
        for _, child in group:
            factor[child] = f
    factor *= 1.0 + rng.uniform(-spread, spread)
    out = joints.copy()
    for child, parent in enumerate(H36M_PARENTS):
        if parent >= 0:
            out[:, child] = out[:, parent] + factor[child] * (joints[:, child] - joints[:, parent])
    # keep the feet on the ground: shift vertically so the lowest point is where it was
    out[..., 1] += joints[..., 1].min() - out[..., 1].min()
    return out
