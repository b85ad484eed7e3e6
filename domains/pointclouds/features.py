"""From a sparse depth image (+ image, intrinsics) to what the model reads, in a scale-free space.

Scale: z_ref = the median depth of the points; every depth becomes r = log(z_ref / z), the log of the
inverse depth normalized by the points' own scale. Scaling a scene by any factor leaves r, the local
shapes and the point spacing in pixels unchanged, so one model serves every scene scale and the depth
comes back as z = z_ref * exp(-r).

Per frame (`Sample`, cached for training): a smooth map (push-pull interpolation of the normalized inverse
depth, Gortler et al. 1996: a weighted image pyramid pulled down and pushed back up, linear-time, adaptive
to any point density) and per point its pixel, r, the shape of its
neighbourhood (open3d's KNN covariance / trace, camera frame) and the log of its spacing in pixels
(distance to the nearest other point x focal length / depth: the same for any scene scale and field of
view). Maps that are cheap to redo (the nearest point's r, which the model corrects, and the distance to
it) are made per batch (`collate`), so horizontal flips stay consistent.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from domains.pointclouds.geometry import backproject, point_features

GRAY = 127            # the image of a frame without one (training shows the model such frames too)
N_PIXEL_CHANNELS = 8   # image RGB, push-pull r, nearest r, log distance to the nearest point, sparse r, mask
N_POINT_FEATURES = 11  # dx, dy in the cell, r, r minus the cell's mean r, local shape (6), log relative spacing


@dataclass
class Sample:
    image: np.ndarray        # [H, W, 3] uint8
    smooth: np.ndarray       # [H, W] float32 push-pull r
    rows: np.ndarray         # [n] int point pixel rows
    cols: np.ndarray         # [n]
    r: np.ndarray            # [n] float32
    shape6: np.ndarray       # [n, 6] float32 local covariance / trace (xx, yy, zz, xy, xz, yz)
    spacing: np.ndarray      # [n] float32 log(spacing in pixels)
    z_ref: float
    truth: np.ndarray | None = None   # [H, W] float32 true r (NaN where unknown); training only

    @property
    def shape(self) -> tuple[int, int]:
        return self.smooth.shape


def reference_depth(sparse: np.ndarray) -> float:
    values = sparse[sparse > 0]
    return float(np.median(values)) if len(values) else float("nan")


def featurize(sparse: np.ndarray, image: np.ndarray, K: np.ndarray, depth: np.ndarray | None = None) -> Sample:
    """`sparse`: [H, W] depth of the projected points (0 = none); `depth`: the truth for training (0 =
    unknown). No points: an empty sample (z_ref NaN) that training and evaluation skip."""
    rows, cols = np.nonzero(sparse > 0)
    if len(rows) == 0:
        return Sample(np.ascontiguousarray(image[..., :3]), np.zeros(sparse.shape, np.float32), rows, cols,
                      np.zeros(0, np.float32), np.zeros((0, 6), np.float32), np.zeros(0, np.float32), float("nan"))
    z = sparse[rows, cols].astype(np.float64)
    z_ref = float(np.median(z))
    r = np.log(z_ref / z).astype(np.float32)
    smooth = np.log(push_pull(rows, cols, np.exp(r), sparse.shape)).astype(np.float32)
    shape6, spacing = point_features(backproject(sparse, K))
    pixels = np.where(np.isfinite(spacing), spacing * K[0, 0] / z, max(sparse.shape))   # a lone point: image size
    rel = np.log(np.maximum(pixels, 1e-3)).astype(np.float32)
    truth = None
    if depth is not None:
        known = depth > 0
        truth = np.full(sparse.shape, np.nan, np.float32)
        truth[known] = np.log(z_ref / depth[known])
    return Sample(np.ascontiguousarray(image[..., :3]), smooth, rows, cols, r, shape6, rel, z_ref, truth)


def push_pull(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape) -> np.ndarray:
    """Scattered positive values -> a smooth map through every point. Pull: halve the resolution of the
    weighted values and weights (area averages) down to a few pixels. Push: from the coarsest level up, a
    cell of level l keeps its own mean where it holds at least one point (weight x 4^l >= 1) and takes
    the level below, upsampled bilinearly, where it holds none (partly, below one point's worth)."""
    weights = np.zeros(shape, np.float32)
    weighted = np.zeros(shape, np.float32)
    weights[rows, cols] = 1.0
    weighted[rows, cols] = values
    levels = [(weighted, weights)]
    while min(levels[-1][1].shape) > 2:
        v, w = levels[-1]
        size = (max(1, w.shape[1] // 2), max(1, w.shape[0] // 2))
        levels.append((cv2.resize(v, size, interpolation=cv2.INTER_AREA),
                       cv2.resize(w, size, interpolation=cv2.INTER_AREA)))
    v, w = levels[-1]
    estimate = np.where(w > 0, v / np.maximum(w, 1e-12), float(np.mean(values))).astype(np.float32)
    for level in range(len(levels) - 2, -1, -1):
        v, w = levels[level]
        up = cv2.resize(estimate, (w.shape[1], w.shape[0]), interpolation=cv2.INTER_LINEAR)
        alpha = np.minimum(w * 4.0 ** level, 1.0)   # points in the cell (area averages x cell area)
        estimate = alpha * (v / np.maximum(w, 1e-12)) + (1 - alpha) * up
    return estimate


def nearest_maps(rows: np.ndarray, cols: np.ndarray, r: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """(r of the nearest point [H, W], distance to it in pixels [H, W]) by the exact Euclidean distance
    transform (scipy)."""
    if len(r) == 0:
        return np.zeros(shape, np.float32), np.full(shape, 1e3, np.float32)
    empty = np.ones(shape, bool)
    empty[rows, cols] = False
    grid = np.zeros(shape, np.float32)
    grid[rows, cols] = r
    dist, (ii, jj) = ndimage.distance_transform_edt(empty, return_indices=True)
    return grid[ii, jj], dist.astype(np.float32)


def pack(samples: list[Sample], prefix: str) -> dict[str, np.ndarray]:
    """Samples of one split and pattern -> flat arrays for an .npz (images and truths live with the frames)."""
    counts = [len(s.r) for s in samples]
    cat = lambda xs, dtype: np.concatenate(xs).astype(dtype) if xs else np.zeros(0, dtype)   # noqa: E731
    return {f"{prefix}_smooth": np.stack([s.smooth for s in samples]).astype(np.float16),
            f"{prefix}_rows": cat([s.rows for s in samples], np.int16),
            f"{prefix}_cols": cat([s.cols for s in samples], np.int16),
            f"{prefix}_r": cat([s.r for s in samples], np.float32),
            f"{prefix}_shape6": np.concatenate([s.shape6 for s in samples]).astype(np.float16),
            f"{prefix}_spacing": cat([s.spacing for s in samples], np.float16),
            f"{prefix}_z_ref": np.array([s.z_ref for s in samples]),
            f"{prefix}_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)}


def unpack(arrays, prefix: str, i: int, image: np.ndarray, depth: np.ndarray | None) -> Sample:
    lo, hi = arrays[f"{prefix}_offsets"][i: i + 2]
    z_ref = float(arrays[f"{prefix}_z_ref"][i])
    truth = None
    if depth is not None:
        truth = np.full(depth.shape, np.nan, np.float32)
        known = depth > 0
        truth[known] = np.log(z_ref / depth[known])
    return Sample(image, arrays[f"{prefix}_smooth"][i].astype(np.float32),
                  arrays[f"{prefix}_rows"][lo:hi].astype(np.int64),
                  arrays[f"{prefix}_cols"][lo:hi].astype(np.int64), arrays[f"{prefix}_r"][lo:hi],
                  arrays[f"{prefix}_shape6"][lo:hi].astype(np.float32),
                  arrays[f"{prefix}_spacing"][lo:hi].astype(np.float32), z_ref, truth)
