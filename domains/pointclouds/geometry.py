"""Camera geometry on open3d: pinhole rays, projection of points to a sparse depth image (z-buffered),
back-projection, per-point local shape and spacing, statistical outlier removal, densified clouds.

Conventions (open3d's and OpenCV's): camera frame x right, y down, z forward; depth = z (not range);
pixel (row v, column u) has its centre at u = fx * x / z + cx, v = fy * y / z + cy, and a point lands on
the pixel nearest to its projection. Extrinsics are 4 x 4 world-to-camera matrices.
"""
from __future__ import annotations

import numpy as np
import open3d as o3d

FAR = 1e9   # "no maximum depth" for open3d's projection functions


def intrinsic_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _tensor(a: np.ndarray, dtype=o3d.core.Dtype.Float64) -> o3d.core.Tensor:
    return o3d.core.Tensor(np.ascontiguousarray(a), dtype=dtype)


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera extrinsic of a camera at `eye` looking at `target` (world z up, image y down)."""
    forward = np.asarray(target, float) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])
    ext = np.eye(4)
    ext[:3, :3], ext[:3, 3] = rot, -rot @ eye
    return ext


def pinhole_rays(K: np.ndarray, extrinsic: np.ndarray, height: int, width: int) -> o3d.core.Tensor:
    """World rays [H, W, 6] (origin, direction with camera-frame z = 1, so t_hit is depth) of every pixel
    centre. open3d's ray generator puts pixel centres at u + 0.5 while its projection rounds to the nearest
    pixel (centres at u); shifting cx, cy by half a pixel makes rendering and projection agree."""
    shifted = K.copy()
    shifted[0, 2] += 0.5
    shifted[1, 2] += 0.5
    return o3d.t.geometry.RaycastingScene.create_rays_pinhole(_tensor(shifted), _tensor(extrinsic), width, height)


def project(points: np.ndarray, K: np.ndarray, height: int, width: int, extrinsic: np.ndarray | None = None,
            max_depth: float = FAR) -> np.ndarray:
    """Sparse depth image [H, W] float32 (0 = no point): each point on its nearest pixel, the nearest point
    wins where several land on one pixel; points behind the camera or outside the image are dropped."""
    if len(points) == 0:
        return np.zeros((height, width), np.float32)
    cloud = o3d.t.geometry.PointCloud(_tensor(points, o3d.core.Dtype.Float32))
    ext = _tensor(np.eye(4) if extrinsic is None else extrinsic)
    image = cloud.project_to_depth_image(width, height, _tensor(K), ext, depth_scale=1.0, depth_max=max_depth)
    return image.as_tensor().numpy()[..., 0].astype(np.float32, copy=False)


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points [N, 3] float32 of the non-zero pixels, in row-major pixel order (np.nonzero's).
    Written out rather than open3d's create_from_depth_image: that returns its points in an order that
    depends on its thread scheduling, and per-point features must stay attached to their pixels."""
    rows, cols = np.nonzero(depth > 0)
    z = depth[rows, cols].astype(np.float64)
    x = (cols - K[0, 2]) / K[0, 0] * z
    y = (rows - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], 1).astype(np.float32)


def point_features(points: np.ndarray, neighbours: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(local shape [N, 6], distance to the nearest other point [N]) from open3d's KNN covariance estimate
    and nearest-neighbour search. Local shape = the neighbourhood's covariance (xx, yy, zz, xy, xz, yz)
    divided by its trace: it holds the surface normal (least-variance direction) and whether the points
    lie on a line (a LiDAR scan line), a plane or a blob, and it is continuous in the points. (A normal
    vector is not: on a scan line it is undefined, and open3d's estimate then flips with rounding.)"""
    n = len(points)
    if n < 3:
        shape = np.tile(np.array([1, 1, 1, 0, 0, 0], np.float32) / 3, (n, 1))
        return shape, np.full(n, np.inf if n < 2 else float(np.linalg.norm(points[0] - points[1])), np.float32)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    cloud.estimate_covariances(o3d.geometry.KDTreeSearchParamKNN(min(neighbours, n - 1)))
    cov = np.asarray(cloud.covariances)
    trace = np.maximum(np.trace(cov, axis1=1, axis2=2), 1e-300)[:, None]
    shape = np.stack([cov[:, 0, 0], cov[:, 1, 1], cov[:, 2, 2], cov[:, 0, 1], cov[:, 0, 2], cov[:, 1, 2]], 1) / trace
    spacing = np.asarray(cloud.compute_nearest_neighbor_distance(), np.float32)
    return shape.astype(np.float32), spacing


def statistical_outliers(points: np.ndarray, neighbours: int, std_ratio: float) -> np.ndarray:
    """Mask [N] of points open3d's statistical outlier removal would drop (mean distance to the
    `neighbours` nearest points more than `std_ratio` standard deviations above the cloud's average)."""
    if len(points) <= neighbours:
        return np.zeros(len(points), bool)
    cloud = o3d.t.geometry.PointCloud(_tensor(points, o3d.core.Dtype.Float32))
    _, keep = cloud.remove_statistical_outliers(nb_neighbors=neighbours, std_ratio=std_ratio)
    return ~keep.numpy().astype(bool)


def remove_outliers(sparse: np.ndarray, K: np.ndarray, neighbours: int, std_ratio: float) -> np.ndarray:
    """The sparse depth image without the pixels whose back-projected points are statistical outliers."""
    out = sparse.copy()
    rows, cols = np.nonzero(sparse > 0)
    drop = statistical_outliers(backproject(sparse, K), neighbours, std_ratio)
    out[rows[drop], cols[drop]] = 0.0
    return out


def densified_cloud(depth: np.ndarray, K: np.ndarray, image: np.ndarray | None = None,
                    extrinsic: np.ndarray | None = None) -> o3d.t.geometry.PointCloud:
    """The dense depth back in 3-D (world frame when `extrinsic` is given), coloured by the image if any.
    The points of open3d's create_from_rgbd_image, in row-major pixel order (`backproject`): open3d's own order
    follows its thread scheduling, so the same prediction wrote a different .ply on every run."""
    valid = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
    points = backproject(valid, K).astype(np.float64)
    if extrinsic is not None:   # world-to-camera: camera points back to the world frame
        to_world = np.linalg.inv(np.asarray(extrinsic, float))
        points = points @ to_world[:3, :3].T + to_world[:3, 3]
    cloud = o3d.t.geometry.PointCloud(_tensor(points.astype(np.float32), o3d.core.Dtype.Float32))
    if image is not None:
        rows, cols = np.nonzero(valid > 0)
        colours = np.asarray(image)[rows, cols, :3].astype(np.float32) / 255.0
        cloud.point.colors = _tensor(colours, o3d.core.Dtype.Float32)
    return cloud
