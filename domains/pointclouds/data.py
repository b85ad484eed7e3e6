"""Prepared data: rendered views (image, true depth, intrinsics) and, per sensor pattern, the sparse depth
image its simulated points project to (open3d's z-buffered projection), stored as pixel indices + depths.

    <prepared>/{train,val,test}.npz   rendered from the split's meshes (split by object)
    <prepared>/aloe.npz               the real Aloe scene, `aloe.draws` independent sensor draws
    <prepared>/new_frames/            prediction input for the workflow: the committed example frames and
                                      (with aloe.use) the Aloe scene's first draw as a .ply + camera + image
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.errors import UserError
from core.io import atomic_path, file_sha256
from core.progress import Progress
from domains.pointclouds import aloe, examples, features, scenes, sensors
from domains.pointclouds.geometry import project
from domains.pointclouds.meshes import sources_of

SPLITS = ("train", "val", "test")
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2, "aloe": 3}


def _sparse_arrays(frames: list[dict], patterns: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for p in patterns:
        idx = [np.flatnonzero(f[p]) for f in frames]
        out[f"{p}_index"] = np.concatenate(idx).astype(np.int32) if idx else np.zeros(0, np.int32)
        out[f"{p}_depth"] = np.concatenate([f[p].reshape(-1)[i] for f, i in zip(frames, idx)]).astype(np.float32)
        out[f"{p}_offsets"] = np.concatenate([[0], np.cumsum([len(i) for i in idx])]).astype(np.int64)
    return out


def render_split(split: str, settings: Mapping[str, Any], patterns: list[str], seed: int,
                 progress: bool = True) -> dict[str, np.ndarray]:
    s = settings
    n, per = int(s["views"][split]), int(s["views_per_scene"])
    h, w = int(s["height"]), int(s["width"])
    sources = sources_of(list(s["split"][split]))
    frames, objects = [], []
    bar = Progress(n, f"render {split}", "view", enabled=progress)
    for scene_idx in range(-(-n // per)):
        # one generator per scene, from (seed, split, scene): a scene does not depend on how many came before
        rng = np.random.default_rng([seed, SPLIT_SEEDS[split], scene_idx])
        views = min(per, n - scene_idx * per)
        scene = scenes.compose(rng, sources, s, views)
        for ext in scene.cameras:
            K = scenes.camera_intrinsics(rng, h, w, s["vfov_deg"])
            image, depth = scenes.render(scene, K, ext, h, w, rng, float(s["max_depth"]))
            frame = {"image": image, "depth": depth, "K": K, "scale": scene.scale}
            cast = sensors.scene_source(scene, ext)
            for p in patterns:
                frame[p] = project(sensors.simulate(p, cast, depth, image, K, rng), K, h, w)
            frames.append(frame)
            objects.append(scene.objects)
            bar.update(1)
    bar.close()
    return {"image": np.stack([f["image"] for f in frames]), "depth": np.stack([f["depth"] for f in frames]),
            "K": np.stack([f["K"] for f in frames]), "scale": np.array([f["scale"] for f in frames]),
            "objects": np.array([json.dumps(o) for o in objects]), **_sparse_arrays(frames, patterns)}


def aloe_split(settings: Mapping[str, Any], patterns: list[str], seed: int) -> dict[str, np.ndarray]:
    scene = aloe.load(int(settings["downsample"]), float(settings["median_depth"]))
    image, depth, K = scene["image"], scene["depth"], scene["K"]
    h, w = depth.shape
    cast = sensors.image_source(depth, K)
    frames = []
    for draw in range(int(settings["draws"])):
        rng = np.random.default_rng([seed, SPLIT_SEEDS["aloe"], draw])
        frames.append({p: project(sensors.simulate(p, cast, depth, image, K, rng, mounted=False), K, h, w)
                       for p in patterns})
    n = len(frames)
    return {"image": np.repeat(image[None], n, 0), "depth": np.repeat(depth[None], n, 0),
            "K": np.repeat(K[None], n, 0), "scale": np.ones(n), "objects": np.array(['["aloe"]'] * n),
            "disparity_scale": np.array(scene["disparity_scale"]), "downsample": np.array(int(settings["downsample"])),
            **_sparse_arrays(frames, patterns)}


def add_features(arrays: dict[str, np.ndarray], patterns: list[str], progress: bool = True) -> dict[str, np.ndarray]:
    """The model's cached inputs of every frame and pattern (features.featurize), beside the raw frames."""
    n = len(arrays["depth"])
    frames = _FrameView(arrays, patterns)
    bar = Progress(n * len(patterns), "featurize", "frame", enabled=progress)
    for p in patterns:
        samples = []
        for i in range(n):
            samples.append(features.featurize(frames.sparse(p, i), arrays["image"][i], arrays["K"][i]))
            bar.update(1)
        arrays.update(features.pack(samples, f"feat_{p}"))
    bar.close()
    return arrays


def _save(path: Path, arrays: Mapping[str, np.ndarray]) -> str:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return file_sha256(path)


def prepare(cfg: Mapping[str, Any], out_dir: Path, progress: bool = True) -> dict[str, str]:
    """Render every split and the Aloe draws into out_dir; {file: sha256} of what was written (simulated)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    patterns = list(cfg["sensors"]["patterns"])
    seed = int(cfg["seed"])
    hashes = {}
    for split in SPLITS:
        arrays = add_features(render_split(split, cfg["scenes"], patterns, seed, progress), patterns, progress)
        hashes[f"{split}.npz"] = _save(out_dir / f"{split}.npz", arrays)
    new_aloe = None
    if cfg["aloe"]["use"]:
        arrays = add_features(aloe_split(cfg["aloe"], patterns, seed), patterns, progress)
        hashes["aloe.npz"] = _save(out_dir / "aloe.npz", arrays)
        # SfM-like points suit a stereo scene best; else the first pattern
        pattern = "sfm" if "sfm" in patterns else patterns[0]
        new_aloe = {"sparse": _FrameView(arrays, patterns).sparse(pattern, 0), "image": arrays["image"][0],
                    "K": arrays["K"][0]}
    examples.new_frames(out_dir / "new_frames", new_aloe)
    return hashes


class _FrameView:
    """Sparse depth images of frames held as pixel indices + depths per pattern."""

    def __init__(self, arrays: Mapping[str, np.ndarray], patterns: list[str], name: str = "frames"):
        self.arrays, self.patterns, self.name = arrays, patterns, name
        self.images, self.depths, self.K = arrays["image"], arrays["depth"], arrays["K"]

    def __len__(self) -> int:
        return len(self.depths)

    @property
    def shape(self) -> tuple[int, int]:
        return self.depths.shape[1:]

    def sparse(self, pattern: str, i: int) -> np.ndarray:
        """The sparse depth image [H, W] float32 (0 = no point) of frame i under `pattern`."""
        if pattern not in self.patterns:
            raise UserError(f"{self.name}: no sensor pattern {pattern!r} prepared (have: {', '.join(self.patterns)}); "
                            "add it to sensors.patterns and prepare again")
        lo, hi = self.arrays[f"{pattern}_offsets"][i: i + 2]
        out = np.zeros(self.shape, np.float32)
        out.reshape(-1)[self.arrays[f"{pattern}_index"][lo:hi]] = self.arrays[f"{pattern}_depth"][lo:hi]
        return out

    def sample(self, pattern: str, i: int, with_truth: bool = False) -> features.Sample:
        """The model's input for frame i under `pattern` (cached features), with the true r if asked."""
        return features.unpack(self.arrays, f"feat_{pattern}", i, self.images[i],
                               self.depths[i] if with_truth else None)

    def points(self, pattern: str, i: int) -> int:
        return int(np.diff(self.arrays[f"{pattern}_offsets"][i: i + 2])[0])


class Frames(_FrameView):
    """A prepared split, read once: images, true depths, intrinsics, sparse inputs and features per pattern."""

    def __init__(self, prepared: Path, name: str):
        path = Path(prepared) / f"{name}.npz"
        if not path.exists():
            raise UserError(f"{path}: missing; run the pointclouds prepare step into {prepared} first"
                            + (" (with aloe.use=true)" if name == "aloe" else ""))
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        super().__init__(arrays, [k[: -len("_index")] for k in arrays if k.endswith("_index")], name)
