"""Cameras: seeded virtual cameras with Human3.6M-like intrinsics, pinhole projection, the Qualisys calibration
of Pose2Sim's demo (read as Pose2Sim converts it), and confidence-weighted multi-view triangulation (DLT).

Conventions: OpenCV camera frame (x right, y down, z forward); world -> camera is X_c = R (X_w - C) = R X_w + t.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError

# Human3.6M's four cameras: f ~ 1145 px, principal point ~ (512, 515), 1000 x 1002 images
H36M_FOCAL = 1145.0
H36M_SIZE = (1000, 1000)


@dataclass
class Camera:
    name: str
    K: np.ndarray            # [3, 3] intrinsics (pixels)
    R: np.ndarray            # [3, 3] world -> camera rotation
    t: np.ndarray            # [3] translation (metres): X_c = R X_w + t
    size: tuple[int, int]    # image (width, height)
    dist: np.ndarray | None = None   # OpenCV (k1, k2, p1, p2) or None

    @property
    def P(self) -> np.ndarray:
        """[3, 4] projection matrix (undistorted pixels)."""
        return self.K @ np.hstack([self.R, self.t[:, None]])

    def to_camera(self, world: np.ndarray) -> np.ndarray:
        """World points [..., 3] (metres) -> camera-frame points [..., 3] (metres)."""
        return world @ self.R.T + self.t

    def project(self, world: np.ndarray) -> np.ndarray:
        """World points [..., 3] -> pixels [..., 2] (pinhole; distortion applied when the camera has it)."""
        return project_camera(self.to_camera(world), self.K, self.dist)


def project_camera(cam_points: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None) -> np.ndarray:
    """Camera-frame points [..., 3] -> pixels [..., 2]. Distortion: OpenCV's radial k1, k2 and tangential p1, p2."""
    z = np.where(np.abs(cam_points[..., 2:3]) < 1e-9, 1e-9, cam_points[..., 2:3])
    xy = cam_points[..., :2] / z
    if dist is not None and np.any(dist):
        k1, k2, p1, p2 = dist[:4]
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        xy = np.stack([x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                       y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y], -1)
    return xy * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])


def look_at(position: np.ndarray, target: np.ndarray, roll: float = 0.0, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """World -> camera rotation of a camera at `position` looking at `target` (world y up), rolled by `roll`
    radians about its optical axis."""
    forward = np.asarray(target, float) - np.asarray(position, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)          # x = y_down x z = z x up
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    c, s = np.cos(roll), np.sin(roll)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ R


def virtual_camera(rng: np.random.Generator, target: np.ndarray, name: str, distance=(4.0, 6.0), height=(0.6, 2.2),
                   focal=(0.95, 1.05), sizes=(H36M_SIZE,), centre_jitter: float = 10.0,
                   roll_deg: float = 3.0) -> Camera:
    """A static camera around `target` (world metres, y up): random azimuth, distance and height, small roll.
    Intrinsics: Human3.6M's focal length (scaled log-uniformly within `focal`) on a 1000-px-wide image, with the
    image one of `sizes`; the focal length scales with the image width (a 1920-px image of the same lens)."""
    azimuth = rng.uniform(0, 2 * np.pi)
    d = rng.uniform(*distance)
    position = np.array([target[0] + d * np.cos(azimuth), rng.uniform(*height), target[2] + d * np.sin(azimuth)])
    R = look_at(position, target, np.deg2rad(rng.uniform(-roll_deg, roll_deg)))
    w, h = (int(v) for v in sizes[rng.integers(len(sizes))])
    f = H36M_FOCAL * w / H36M_SIZE[0] * np.exp(rng.uniform(np.log(focal[0]), np.log(focal[1])))
    K = np.array([[f, 0, w / 2 + rng.uniform(-centre_jitter, centre_jitter)],
                  [0, f, h / 2 + rng.uniform(-centre_jitter, centre_jitter)], [0, 0, 1]])
    return Camera(name, K, R, -R @ position, (w, h))


# -- Qualisys calibration (Pose2Sim's demo) --------------------------------------------------------------------
def read_qca(path: str | Path) -> list[Camera]:
    """A Qualisys `.qca.txt` calibration -> cameras sorted by name, converted exactly as Pose2Sim 0.10's
    `calib_qca_fun` does: sensor units are 1/64 pixel, the transform is world-centred (millimetres), then the
    camera is turned by pi about its x axis into the OpenCV convention."""
    path = Path(path)
    try:
        root = ET.fromstring(path.read_bytes())
    except (OSError, ET.ParseError) as err:
        raise UserError(f"{path}: not a readable Qualisys calibration ({err})") from None
    cams = []
    for tag in root.findall("cameras/camera"):
        fov, intr, tr = tag.find("fov_video"), tag.find("intrinsic"), tag.find("transform")
        left, top = float(fov.get("left")), float(fov.get("top"))
        size = (int(float(fov.get("right")) - left + 1), int(float(fov.get("bottom")) - top + 1))
        g = lambda key: float(intr.get(key)) / 64.0  # noqa: E731
        K = np.array([[g("focalLengthU"), 0, g("centerPointU") - left], [0, g("focalLengthV"), g("centerPointV") - top],
                      [0, 0, 1]])
        dist = np.array([g("radialDistortion1"), g("radialDistortion2"), g("tangentalDistortion1"),
                         g("tangentalDistortion2")])
        M = np.array([[float(tr.get(f"r{i}{j}")) for j in (1, 2, 3)] for i in (1, 2, 3)])
        T = np.array([float(tr.get(k)) for k in "xyz"]) / 1000.0
        flip = np.diag([1.0, -1.0, -1.0])          # rotation by pi about the camera's x axis
        R = flip @ M
        cams.append(Camera(tag.get("serial"), K, R, -R @ T, size, dist))
    if not cams:
        raise UserError(f"{path}: no <camera> entries; pass a Qualisys .qca.txt calibration")
    return sorted(cams, key=lambda c: c.name)


def undistort(points: np.ndarray, cam: Camera) -> np.ndarray:
    """Distorted pixels [..., 2] -> undistorted pixels [..., 2] (OpenCV's iterative inverse)."""
    if cam.dist is None or not np.any(cam.dist):
        return points
    import cv2
    flat = points.reshape(-1, 1, 2).astype(np.float64)
    out = cv2.undistortPoints(flat, cam.K, cam.dist, P=cam.K)
    return out.reshape(points.shape)


def triangulate(points: np.ndarray, scores: np.ndarray, cams: list[Camera], min_score: float = 0.3,
                max_error_px: float = 20.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidence-weighted DLT for every frame and joint.

    points [C, N, J, 2] (distorted pixels) and scores [C, N, J] of C cameras -> (world points [N, J, 3] metres,
    mean reprojection error [N, J] in pixels over the cameras used, cameras used [N, J]). Cameras below
    `min_score` are left out; while the worst camera's reprojection error exceeds `max_error_px` and more than
    two remain, it is dropped and the point re-triangulated (as Pose2Sim does). Points seen by fewer than two
    cameras are NaN."""
    C, N, J = scores.shape
    und = np.stack([undistort(points[c], cams[c]) for c in range(C)])
    Ps = np.stack([c.P for c in cams])
    world = np.full((N, J, 3), np.nan)
    error = np.full((N, J), np.nan)
    used = np.zeros((N, J), int)
    for n in range(N):
        for j in range(J):
            keep = [c for c in range(C) if scores[c, n, j] >= min_score and np.all(np.isfinite(und[c, n, j]))]
            while len(keep) >= 2:
                X = _dlt(und[keep, n, j], scores[keep, n, j], Ps[keep])
                errs = np.array([np.linalg.norm(cams[c].project(X) - points[c, n, j]) for c in keep])
                if errs.max() <= max_error_px or len(keep) == 2:
                    world[n, j], error[n, j], used[n, j] = X, errs.mean(), len(keep)
                    break
                keep.pop(int(np.argmax(errs)))
    return world, error, used


def _dlt(uv: np.ndarray, w: np.ndarray, Ps: np.ndarray) -> np.ndarray:
    rows = []
    for (u, v), weight, P in zip(uv, w, Ps):
        rows += [weight * (u * P[2] - P[0]), weight * (v * P[2] - P[1])]
    _, _, vt = np.linalg.svd(np.asarray(rows))
    X = vt[-1]
    return X[:3] / X[3]
