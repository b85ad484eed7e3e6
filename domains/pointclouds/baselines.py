"""Classical depth completion, each with a small grid of settings that `tune` searches on validation frames:

- nearest: nearest-neighbour interpolation of the projected points (scipy griddata);
- linear: linear interpolation on the Delaunay triangulation of the points (scipy griddata) of depth or of
  inverse depth, nearest-neighbour outside the points' convex hull;
- ip-basic: the morphological pipeline of Ku et al. 2018 ("In Defense of Classical Image Processing: Fast
  Depth Completion on the CPU", IP-Basic's fill_in_fast): invert, dilate, close, fill, optionally extend
  to the top of the image, median and bilateral/Gaussian blur, re-invert (OpenCV);
- bilateral: joint bilateral upsampling (Kopf et al. 2007) of the scattered points: each pixel is the
  average of its k nearest points weighted by a spatial Gaussian and a Gaussian of the image colour
  difference between the pixel and the point's pixel (the guidance image).

Every method can first drop statistical outliers among the points (open3d; part of the tuned settings).
Every method returns a depth at every pixel (remaining holes: nearest neighbour).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping

import cv2
import numpy as np
from scipy import interpolate, spatial

from domains.pointclouds.geometry import remove_outliers

OUTLIER_FILTERS = {"none": None, "sor2": (16, 2.0), "sor1": (16, 1.0)}   # (neighbours, std ratio)


def _points(sparse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(sparse > 0)
    return np.stack([rows, cols], 1).astype(np.float64), sparse[rows, cols].astype(np.float64)


def _grid(shape) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:shape[0], 0:shape[1]]


def nearest(sparse: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    xy, z = _points(sparse)
    if len(z) == 0:
        return np.zeros_like(sparse)
    rr, cc = _grid(sparse.shape)
    return interpolate.griddata(xy, z, (rr, cc), method="nearest").astype(np.float32)


def linear(sparse: np.ndarray, image: np.ndarray | None = None, space: str = "depth") -> np.ndarray:
    xy, z = _points(sparse)
    if len(z) < 4:
        return nearest(sparse)
    values = 1.0 / z if space == "inverse" else z
    rr, cc = _grid(sparse.shape)
    try:
        out = interpolate.griddata(xy, values, (rr, cc), method="linear")
    except (spatial.QhullError, ValueError):   # all points on one line: no triangulation
        return nearest(sparse)
    out = 1.0 / out if space == "inverse" else out
    hole = ~np.isfinite(out) | (out <= 0)
    if hole.any():
        out[hole] = nearest(sparse)[hole]
    return out.astype(np.float32)


def _kernel(name: str) -> np.ndarray:
    kind, size = name[:-1], int(name[-1])
    if kind == "full":
        return np.ones((size, size), np.uint8)
    r = size // 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (np.abs(yy) + np.abs(xx) <= r).astype(np.uint8)   # diamond


def ip_basic(sparse: np.ndarray, image: np.ndarray | None = None, kernel: str = "diamond5",
             extrapolate: bool = True, blur: str = "bilateral") -> np.ndarray:
    if not np.any(sparse > 0):
        return np.zeros_like(sparse)
    # inverted depth (near = large) lets dilation favour near surfaces; the offset keeps every valid > 0.1
    max_depth = float(sparse.max()) * 1.1 + 0.2
    d = sparse.astype(np.float32).copy()
    valid = d > 0
    d[valid] = max_depth - d[valid]
    d = cv2.dilate(d, _kernel(kernel))
    d = cv2.morphologyEx(d, cv2.MORPH_CLOSE, _kernel("full5"))
    empty = d < 0.1
    d[empty] = cv2.dilate(d, _kernel("full7"))[empty]
    if extrapolate:
        top = np.argmax(d > 0.1, axis=0)
        has = (d > 0.1).any(0)
        rows = np.arange(d.shape[0])[:, None]
        d = np.where((rows < top[None]) & has[None], d[top, np.arange(d.shape[1])][None], d)
        empty = d < 0.1
        d[empty] = cv2.dilate(d, np.ones((31, 31), np.uint8))[empty]
    d = cv2.medianBlur(d, 5)
    if blur == "bilateral":
        d = cv2.bilateralFilter(d, 5, 1.5, 2.0)
    elif blur == "gaussian":
        valid = d > 0.1
        d[valid] = cv2.GaussianBlur(d, (5, 5), 0)[valid]
    valid = d > 0.1
    out = np.zeros_like(d)
    out[valid] = max_depth - d[valid]
    hole = ~valid | (out <= 0)
    if hole.any():
        out[hole] = nearest(sparse)[hole]
    return out


def neighbours_of(sparse: np.ndarray, image: np.ndarray | None = None,
                  k: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Every pixel's k nearest points (cKDTree) and, given the image, the squared colour difference between
    the pixel and each of those points' pixels: (depths, distances, indices, colour differences or None).
    The expensive part of `bilateral`, shared by all its settings while tuning."""
    xy, z = _points(sparse)
    k = min(k, len(z))
    rr, cc = _grid(sparse.shape)
    pix = np.stack([rr.ravel(), cc.ravel()], 1).astype(np.float64)
    dist, idx = spatial.cKDTree(xy).query(pix, k=k)
    dist, idx = dist.reshape(len(pix), k), idx.reshape(len(pix), k)
    diff = None
    if image is not None:
        colour = image.reshape(-1, image.shape[-1]).astype(np.float64) / 255.0
        at_points = colour[(xy[:, 0] * sparse.shape[1] + xy[:, 1]).astype(int)]
        diff = np.sum((colour[:, None, :] - at_points[idx]) ** 2, -1)
    return z, dist, idx, diff


def bilateral(sparse: np.ndarray, image: np.ndarray, sigma_space: float = 2.0, sigma_colour: float = 0.1,
              knn: tuple | None = None) -> np.ndarray:
    if not np.any(sparse > 0):
        return np.zeros_like(sparse)
    z, dist, idx, diff = knn if knn is not None else neighbours_of(sparse, image)
    # spatial weights relative to the nearest point: far from every point, the nearest ones still count
    logw = -0.5 * ((dist ** 2 - dist[:, :1] ** 2) / sigma_space ** 2)
    if np.isfinite(sigma_colour) and diff is not None:
        logw = logw - 0.5 * diff / sigma_colour ** 2
    w = np.exp(logw - logw.max(1, keepdims=True))
    out = np.sum(w * z[idx], 1) / np.sum(w, 1)
    return out.reshape(sparse.shape).astype(np.float32)


METHODS: dict[str, Callable] = {"nearest": nearest, "linear": linear, "ip-basic": ip_basic, "bilateral": bilateral}
GRIDS: dict[str, dict[str, list]] = {
    "nearest": {},
    "linear": {"space": ["depth", "inverse"]},
    "ip-basic": {"kernel": ["diamond3", "diamond5", "diamond7", "full5"], "extrapolate": [True, False],
                 "blur": ["bilateral", "gaussian", "none"]},
    "bilateral": {"sigma_space": [1.0, 2.0, 4.0, 8.0], "sigma_colour": [0.05, 0.1, 0.2, float("inf")]},
}


def settings_grid(method: str) -> list[dict[str, Any]]:
    """Every setting tried for `method`: its own grid x the outlier filter."""
    grid = {**GRIDS[method], "outliers": list(OUTLIER_FILTERS)}
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def filtered(sparse: np.ndarray, K: np.ndarray, outliers: str) -> np.ndarray:
    spec = OUTLIER_FILTERS[outliers]
    return sparse if spec is None else remove_outliers(sparse, K, *spec)


def complete(method: str, sparse: np.ndarray, image: np.ndarray, K: np.ndarray,
             settings: Mapping[str, Any]) -> np.ndarray:
    """Dense depth [H, W] from the sparse depth image with one method and one setting."""
    params = {k: v for k, v in settings.items() if k != "outliers"}
    return METHODS[method](filtered(sparse, K, settings.get("outliers", "none")), image, **params)
