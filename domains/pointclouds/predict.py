"""Prediction on new data: clouds (+ camera, + optional image) -> dense depth, uncertainty, previews.

Per frame, in the output folder: `<id>.depth.npy` (metres, float32), `<id>.depth.png` (16-bit millimetres,
0 = none, the TUM/ROS convention), `<id>.confidence.npy` (exp(-b), b = expected absolute relative error),
`<id>.uncertainty.npy` (expected absolute error in metres), `<id>.preview.png` (image | input points | depth
| confidence), `<id>.dense.ply` (the dense depth back in 3-D, world frame, coloured; `predict.write_ply`);
one table row per frame (status, message, point counts, file names).

Statuses: ok, missing_file, bad_camera, unreadable_cloud, bad_image, no_finite_points, behind_camera,
outside_image, too_few_points.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import open3d as o3d
from PIL import Image

from core.errors import UserError
from core.readers import pass_through
from domains.pointclouds import baselines, geometry, readers
from domains.pointclouds.features import GRAY, featurize

STATUSES = ("ok", "missing_file", "bad_camera", "unreadable_cloud", "bad_image", "no_finite_points",
            "behind_camera", "outside_image", "too_few_points")
FILES = ("depth_npy", "depth_png", "confidence", "uncertainty", "preview", "ply")
COLUMNS = ("id", "status", "message", "points", "points_in_view", "nonfinite_dropped", *FILES)


@dataclass
class Loaded:
    spec: readers.FrameSpec
    camera: readers.Camera
    image: np.ndarray
    sparse: np.ndarray
    points: int
    in_view: int
    dropped: int


class FrameProblem(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def load_frame(spec: readers.FrameSpec, settings: Mapping[str, Any], min_points: int) -> Loaded:
    """Read, check and project one frame; raises FrameProblem(status, message) for a bad one."""
    for role, path in (("cloud", spec.cloud), ("camera", spec.camera), ("image", spec.image)):
        if path is None and role != "image":
            where = "its manifest cell is empty" if role == "cloud" else \
                f"no {spec.cloud.stem}.json or camera.json beside {spec.cloud.name}, or an empty manifest cell"
            raise FrameProblem("missing_file", f"{spec.id}: no {role} file given ({where})")
        if path is not None and not Path(path).is_file():
            what = "is a folder, not a file" if Path(path).is_dir() else "not found"
            raise FrameProblem("missing_file", f"{role} file {path} {what}")
    try:
        camera = readers.read_camera(spec.camera)
    except UserError as err:
        raise FrameProblem("bad_camera", str(err)) from None
    try:
        image = readers.read_image(spec.image, camera) if spec.image is not None else \
            np.full((camera.height, camera.width, 3), GRAY, np.uint8)
    except UserError as err:
        raise FrameProblem("bad_image", str(err)) from None
    try:
        points, dropped = readers.read_cloud(spec.cloud)
    except UserError as err:
        raise FrameProblem("unreadable_cloud", str(err)) from None
    if len(points) == 0:
        raise FrameProblem("no_finite_points", f"{spec.cloud}: all {dropped} points are NaN or infinite")
    if settings["voxel"] > 0:
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)).voxel_down_sample(settings["voxel"])
        points = np.asarray(cloud.points)
    z = points @ camera.extrinsic[2, :3] + camera.extrinsic[2, 3]
    if not np.any(z > 0):
        raise FrameProblem("behind_camera", f"{spec.cloud}: all {len(points)} points are behind the camera; check "
                           "the extrinsics (world_to_camera vs camera_to_world: extrinsics_convention)")
    sparse = geometry.project(points, camera.K, camera.height, camera.width, camera.extrinsic)
    sparse = baselines.filtered(sparse, camera.K, settings["outlier_filter"])
    in_view = int((sparse > 0).sum())
    if in_view == 0:
        raise FrameProblem("outside_image", f"{spec.cloud}: no point projects into the {camera.width} x "
                           f"{camera.height} image; check the intrinsics and extrinsics")
    if in_view < min_points:
        raise FrameProblem("too_few_points", f"{spec.cloud}: only {in_view} image pixels have a point; the model "
                           f"needs at least {min_points} (model.min_points, fixed when it was trained)")
    return Loaded(spec, camera, image, sparse, len(points), in_view, dropped)


def working_factor(height: int, width: int, patch: int, max_tokens: int) -> int:
    """The smallest integer downscale s at which a frame fits the encoder: ceil(H/s/p) x ceil(W/s/p) patch
    tokens plus at most as many point tokens (one per occupied patch cell) within `max_tokens`. 1 for the
    image sizes the model trained on; about 3 for 640 x 480 with 8-pixel patches and 2,048 tokens."""
    s = 1
    while 2 * -(-height // (s * patch)) * -(-width // (s * patch)) > max_tokens:
        s += 1
    return s


def downscale(sparse: np.ndarray, image: np.ndarray, K: np.ndarray, s: int):
    """(sparse, image, K) at 1/s resolution on the exact s x s block grid: the nearest point of each block
    (a z-buffer), the block mean colour, and the intrinsics of the coarser pixels."""
    h, w = sparse.shape
    hs, ws = -(-h // s), -(-w // s)
    pad = ((0, hs * s - h), (0, ws * s - w))
    depth = np.pad(sparse, pad).reshape(hs, s, ws, s)
    depth = np.where(depth > 0, depth, np.inf).min((1, 3))
    colour = np.pad(image, (*pad, (0, 0)), mode="edge").reshape(hs, s, ws, s, 3).mean((1, 3))
    Ks = K.astype(np.float64).copy()
    Ks[:2, :2] /= s
    Ks[:2, 2] = (K[:2, 2] + 0.5) / s - 0.5
    return np.where(np.isfinite(depth), depth, 0).astype(np.float32), colour.round().astype(np.uint8), Ks


def upscale(depth: np.ndarray, rel: np.ndarray, s: int, shape: tuple[int, int]):
    """A working-resolution prediction back to the full image: bilinear in inverse depth (and in b) on the
    same pixel-centre grid as `downscale`, cropped to `shape`."""
    h, w = shape
    size = (depth.shape[1] * s, depth.shape[0] * s)
    inverse = cv2.resize(1.0 / np.maximum(depth, 1e-12), size, interpolation=cv2.INTER_LINEAR)[:h, :w]
    rel = cv2.resize(rel, size, interpolation=cv2.INTER_LINEAR)[:h, :w]
    return (1.0 / inverse).astype(np.float32), rel.astype(np.float32)


def colourize(values: np.ndarray, valid: np.ndarray, cmap: str = "turbo") -> np.ndarray:
    """[H, W] -> RGB uint8 with the 2-98 % range of the valid values stretched over the colour map."""
    from matplotlib import colormaps
    out = np.zeros((*values.shape, 3), np.uint8)
    if valid.any():
        lo, hi = np.percentile(values[valid], [2, 98])
        t = np.clip((values - lo) / max(hi - lo, 1e-9), 0, 1)
        out[valid] = (colormaps[cmap](t[valid])[:, :3] * 255).astype(np.uint8)
    return out


# Writers are partials of module-level functions, not closures: with `predict -j N` a frame's files come back
# from a worker process, pickled.
def _write_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG")


def _write_dense_ply(depth: np.ndarray, K: np.ndarray, image: np.ndarray | None, extrinsic: np.ndarray | None,
                     path: Path) -> None:
    if not o3d.t.io.write_point_cloud(str(path), geometry.densified_cloud(depth, K, image, extrinsic)):
        raise UserError(f"{path.name}: open3d could not write the dense cloud")


PNG_MAX_M = 65.535   # the 16-bit millimetre PNG's largest depth


def depth_png_mm(depth: np.ndarray) -> np.ndarray:
    """Depth in metres -> the 16-bit millimetre PNG convention, where 0 means "no depth": a positive depth
    never becomes 0 (below 0.5 mm it is written as 1 mm), beyond 65.535 m it saturates; the .npy is exact."""
    mm = np.rint(np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0) * 1000)
    return np.where(depth > 0, np.clip(mm, 1, 65535), 0).astype(np.uint16)


def artifacts(frame: Loaded, depth: np.ndarray, relative_error: np.ndarray, write_ply: bool) -> dict[str, tuple]:
    """{column: (file name, content)} of one frame: arrays are written as .npy, callables write themselves."""
    ident = frame.spec.id
    confidence = np.exp(-relative_error).astype(np.float32)
    known = frame.sparse > 0
    inverse = 1.0 / np.maximum(depth, 1e-9)
    points = colourize(np.where(known, 1.0 / np.maximum(frame.sparse, 1e-9), 0), known)
    preview = np.concatenate([frame.image, points, colourize(inverse, np.isfinite(inverse)),
                              colourize(confidence, np.ones_like(known), "viridis")], 1)
    out = {"depth_npy": (f"{ident}.depth.npy", depth.astype(np.float32)),
           "depth_png": (f"{ident}.depth.png", partial(_write_png, depth_png_mm(depth))),
           "confidence": (f"{ident}.confidence.npy", confidence),
           "uncertainty": (f"{ident}.uncertainty.npy", (depth * relative_error).astype(np.float32)),
           "preview": (f"{ident}.preview.png", partial(_write_png, preview))}
    if write_ply:
        out["ply"] = (f"{ident}.dense.ply",
                      partial(_write_dense_ply, depth, frame.camera.K, frame.image, frame.camera.extrinsic))
    return out


def predict_specs(models: Sequence, meta: Mapping[str, Any], specs: Sequence[readers.FrameSpec],
                  batch_size: int = 4) -> tuple[list[dict], dict[str, Any]]:
    """(one row per frame, {file name: content}) for the frames `specs`, in order."""
    from domains.pointclouds.training import predict_samples
    settings = meta["predict"]
    rows, files, frames = [], {}, []
    for spec in specs:
        try:
            frames.append(load_frame(spec, settings, int(meta["min_points"])))
            rows.append(None)
        except FrameProblem as problem:
            rows.append({"id": spec.id, "status": problem.status, "message": str(problem)})
    patch, max_tokens = int(meta["patch"]), int(meta["encoder"]["max_len"])
    factors = [working_factor(f.camera.height, f.camera.width, patch, max_tokens) for f in frames]
    samples = [featurize(*((f.sparse, f.image, f.camera.K) if s == 1 else downscale(f.sparse, f.image, f.camera.K, s)))
               for f, s in zip(frames, factors)]
    results = iter(predict_samples(models, samples, patch, batch_size))
    loaded, scales = iter(frames), iter(factors)
    for k, row in enumerate(rows):
        if row is not None:
            continue
        frame, (depth, rel), s = next(loaded), next(results), next(scales)
        note = ""
        if s > 1:   # larger than the encoder takes at full resolution: predicted on a coarser grid
            depth, rel = upscale(depth, rel, s, frame.sparse.shape)
            note = (f"predicted at 1/{s} resolution ({-(-frame.camera.width // s)} x {-(-frame.camera.height // s)};"
                    f" the model takes at most {max_tokens} tokens per frame) and upsampled")
        saturated = float(np.mean(depth > PNG_MAX_M))
        if saturated > 0:   # the .npy keeps metres; the 16-bit PNG cannot: say so (a cloud in mm looks like this)
            note = "; ".join(filter(None, [note, (
                f"{saturated:.0%} of pixels lie beyond {PNG_MAX_M:g} m, where the 16-bit millimetre PNG saturates "
                f"(the .npy is exact); median depth {float(np.median(depth)):.4g} m: if the cloud is in millimetres, "
                "divide its coordinates by 1000")]))
        made = artifacts(frame, depth, rel, bool(settings["write_ply"]))
        files.update(dict(made.values()))
        rows[k] = {"id": frame.spec.id, "status": "ok", "message": note, "points": frame.points,
                   "points_in_view": frame.in_view, "nonfinite_dropped": frame.dropped,
                   **{col: name for col, (name, _) in made.items()}}
    # a manifest's other columns come back after the id (an output's own name gets an input_ prefix)
    return [{"id": r["id"], **pass_through(spec.fields, COLUMNS.__contains__),
             **{c: r.get(c, "") for c in COLUMNS[1:]}} for r, spec in zip(rows, specs)], files
