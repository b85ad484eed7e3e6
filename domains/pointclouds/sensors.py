"""Simulated depth sensors: spinning LiDAR (16/32/64 beams), time-of-flight camera, structure-from-motion.

Each returns camera-frame points [N, 3] with the sensor's own sampling pattern and errors; projection to
the image (and its z-buffer) is open3d's, done by the caller. A sensor reads the world through a
`source.cast(origin_cam, dirs_cam) -> (range, |cos incidence|)`: a rendered `scenes.Scene` (rays from the
sensor's own origin, so a LiDAR mounted above and behind the camera sees surfaces the camera does not: the
see-through points of real LiDAR-camera rigs) or a `DepthImageSource` (a ground-truth depth image, e.g. the
Middlebury Aloe scene: sensors at the camera centre (`mounted=False`), no parallax, no incidence angles).

Patterns and parameters (Velodyne data sheets for the beam layouts; KITTI's rig offset):
- lidar16 (VLP-16: 16 beams, -15..+15 deg), lidar32 (HDL-32E: 32 beams, -30.67..+10.67 deg), lidar64
  (HDL-64E: 64 beams, -24.8..+2 deg); azimuth step from the data sheet, coarsened to half a camera pixel
  (finer returns all land on the same pixels); range noise sigma 2 cm; 5 % random dropouts, most returns
  at grazing incidence (|cos| < 0.1) lost; 0.3 % spurious early returns. Beams level with the camera axis.
- tof: a co-located ToF camera of 1/`tof_stride` the image resolution and the same field of view, noise
  sigma = 3 mm + 4 mm/m^2 * z^2, flying pixels where the 2 x 2 sub-samples of a ToF pixel straddle a depth
  edge (a random mix of the two depths), no return beyond 8 m or on dark surfaces, 2 % random dropouts.
- sfm: 100-300 Shi-Tomasi corners of the image (textured regions only, as feature matching finds them),
  relative depth noise growing with depth (1 % at the median depth), 5 % gross outliers (mismatches).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

LIDARS = {  # name: (beams, lowest elevation, highest elevation, azimuth step) in degrees
    "lidar16": (16, -15.0, 15.0, 0.2),
    "lidar32": (32, -30.67, 10.67, 0.16),
    "lidar64": (64, -24.8, 2.0, 0.09),
}
PATTERNS = (*LIDARS, "tof", "sfm")
LIDAR_OFFSET = np.array([0.0, -0.08, -0.27])   # metres in the camera frame: 8 cm above, 27 cm behind (KITTI)
TOF_OFFSET = np.array([0.02, 0.0, 0.0])


@dataclass
class DepthImageSource:
    """Rays against a ground-truth depth image (0 = unknown): the pixel each ray passes through."""
    depth: np.ndarray
    K: np.ndarray

    def cast(self, origin_cam: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.depth.shape
        rng = np.full(len(dirs), np.inf)
        ahead = dirs[:, 2] > 1e-6
        uvw = dirs[ahead] @ self.K.T
        u = np.rint(uvw[:, 0] / uvw[:, 2]).astype(int)
        v = np.rint(uvw[:, 1] / uvw[:, 2]).astype(int)
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        z = np.zeros(len(u))
        z[inside] = self.depth[v[inside], u[inside]]
        ok = inside & (z > 0)
        idx = np.flatnonzero(ahead)[ok]
        rng[idx] = z[ok] / dirs[idx, 2]
        return rng, np.ones(len(dirs))


def lidar(cast: Callable, K: np.ndarray, size: tuple[int, int], pattern: str, rng: np.random.Generator,
          offset: np.ndarray = LIDAR_OFFSET) -> np.ndarray:
    beams, lo, hi, az_step = LIDARS[pattern]
    h, w = size
    half_h = np.degrees(np.arctan(max(K[0, 2], w - K[0, 2]) / K[0, 0])) + 3.0
    pixel_deg = np.degrees(1.0 / K[0, 0])
    step = max(az_step, pixel_deg / 2)
    az = np.radians(np.arange(-half_h, half_h, step) + rng.uniform(0, step))
    el = np.radians(np.linspace(lo, hi, beams))
    e, a = np.meshgrid(el, az, indexing="ij")
    dirs = np.stack([np.cos(e) * np.sin(a), -np.sin(e), np.cos(e) * np.cos(a)], -1).reshape(-1, 3)
    ranges, cos = cast(offset, dirs)
    keep = np.isfinite(ranges) & (rng.random(len(dirs)) > 0.05)
    keep &= ~((cos < 0.1) & (rng.random(len(dirs)) < 0.8))
    ranges = ranges + rng.normal(0, 0.02, len(ranges))
    spurious = rng.random(len(ranges)) < 0.003
    ranges = np.where(spurious, ranges * rng.uniform(0.2, 0.9, len(ranges)), ranges)
    keep &= ranges > 0.05
    return (offset + dirs[keep] * ranges[keep, None]).astype(np.float32)


def tof(cast: Callable, K: np.ndarray, size: tuple[int, int], image: np.ndarray, rng: np.random.Generator,
        stride: int = 4, max_range: float = 8.0, offset: np.ndarray = TOF_OFFSET) -> np.ndarray:
    h, w = size
    # ToF pixel centres on a grid `stride` image pixels apart, each sampled at 2 x 2 sub-positions
    vs, us = np.meshgrid(np.arange(stride / 2 - 0.5, h, stride), np.arange(stride / 2 - 0.5, w, stride), indexing="ij")
    sub = np.array([[-0.25, -0.25], [-0.25, 0.25], [0.25, -0.25], [0.25, 0.25]]) * stride
    uu = us.reshape(-1, 1) + sub[None, :, 1]
    vv = vs.reshape(-1, 1) + sub[None, :, 0]
    rays = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], -1).reshape(-1, 3)
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    ranges, _ = cast(offset, rays)
    ranges = ranges.reshape(-1, 4)
    ok = np.isfinite(ranges).all(1)
    r = np.where(np.isfinite(ranges), ranges, 0)
    spread = r.max(1) - r.min(1)
    mixed = ok & (spread > 0.05 * r.mean(1))
    weights = rng.dirichlet(np.ones(4), len(r))
    value = np.where(mixed, (r * weights).sum(1), r.mean(1))
    value = value + rng.normal(0, 1, len(value)) * (0.003 + 0.004 * value ** 2)
    centre = rays.reshape(-1, 4, 3).mean(1)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    brightness = image.mean(2)[np.clip(vs.astype(int), 0, h - 1), np.clip(us.astype(int), 0, w - 1)].reshape(-1)
    keep = ok & (value < max_range) & (value > 0.05) & (brightness > 20) & (rng.random(len(value)) > 0.02)
    return (offset + centre[keep] * value[keep, None]).astype(np.float32)


def sfm(depth: np.ndarray, K: np.ndarray, image: np.ndarray, rng: np.random.Generator,
        count: tuple[int, int] = (100, 300)) -> np.ndarray:
    gray = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    n = int(rng.integers(count[0], count[1] + 1))
    corners = cv2.goodFeaturesToTrack(gray, maxCorners=n, qualityLevel=0.01, minDistance=2)
    if corners is None:
        return np.zeros((0, 3), np.float32)
    uv = corners.reshape(-1, 2)
    u, v = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
    z = depth[v, u].astype(np.float64)
    keep = z > 0
    u, v, z = u[keep], v[keep], z[keep]
    if len(z) == 0:
        return np.zeros((0, 3), np.float32)
    z = z * (1 + rng.normal(0, 1, len(z)) * 0.01 * z / np.median(z))
    outlier = rng.random(len(z)) < 0.05
    z = np.where(outlier, z * np.exp(rng.uniform(-0.7, 0.7, len(z))), z)
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], 1).astype(np.float32)


def simulate(pattern: str, cast: Callable, depth: np.ndarray, image: np.ndarray, K: np.ndarray,
             rng: np.random.Generator, mounted: bool = True) -> np.ndarray:
    """Camera-frame points of one sensor `pattern` (one of PATTERNS). `mounted`: the LiDAR and ToF sit at
    their rig offsets from the camera (rendered scenes); False: at the camera centre (a depth image source,
    which can only answer rays from there)."""
    size = depth.shape
    if pattern in LIDARS:
        return lidar(cast, K, size, pattern, rng, LIDAR_OFFSET if mounted else np.zeros(3))
    if pattern == "tof":
        return tof(cast, K, size, image, rng, offset=TOF_OFFSET if mounted else np.zeros(3))
    if pattern == "sfm":
        return sfm(depth, K, image, rng)
    raise ValueError(f"unknown sensor pattern {pattern!r}; known: {', '.join(PATTERNS)}")


def scene_source(scene, extrinsic: np.ndarray) -> Callable:
    """Rays into a rendered `scenes.Scene` seen from the camera with this extrinsic."""
    return lambda origin, dirs: scene.cast_camera(extrinsic, origin, dirs)


def image_source(depth: np.ndarray, K: np.ndarray) -> Callable:
    return DepthImageSource(depth, K).cast
