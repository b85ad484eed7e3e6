"""Prepare the lifting data: DeepMimic clips -> forward kinematics -> Human3.6M-17 joints -> seeded virtual
cameras -> detector noise, split by clip (a test motion is never seen in training).

Every split is one `<split>.npz` of sequences (one per clip x variant x camera), concatenated along frames:

    keypoints [T, 17, 2] float32   noisy 2D detections (pixels)
    scores    [T, 17]    float32   detector confidence (0 = missing joint)
    joints    [T, 17, 3] float32   3D joints in the camera frame (metres, OpenCV axes, not root-centred)
    seq_start [S + 1]    int64     sequence s is frames seq_start[s]:seq_start[s+1]
    seq_clip  [S]        str       clip name;   seq_camera [S] int: camera index within the clip
    size      [S, 2]     int       image width, height;   K [S, 3, 3] intrinsics

Training sequences also vary the speed (resampled through slerp), the body's bone lengths and the cameras
(`cameras.train_variety`: distance, focal length and image shape, so that a person's size in
width-normalized coordinates covers real footage too, e.g. a portrait phone video); mirroring is applied on
the fly by each trainer (ours and mmpose's use the same mmpose flip). Validation and test sequences are the
clips as recorded, seen by Human3.6M-like cameras (4-6 m, f = 1145 px +-5%, 1000 x 1000 px).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.errors import UserError
from core.io import atomic_path, file_sha256
from domains.poses.cameras import virtual_camera
from domains.poses.motions import clip_joints, clip_names, clip_path
from domains.poses.noise import NoiseModel, detect, scale_bones

SPLITS = ("train", "val", "test")
# the lift settings the prepared splits depend on (a benchmark reuses a prepared folder made from the same ones;
# train and evaluate refuse a command that changes one)
DATA_KEYS = ("fps", "test_clips", "val_clips", "exclude_clips", "cameras", "noise", "augment", "real")


@dataclass
class Sequences:
    keypoints: np.ndarray
    scores: np.ndarray
    joints: np.ndarray
    seq_start: np.ndarray
    seq_clip: np.ndarray
    seq_camera: np.ndarray
    size: np.ndarray
    K: np.ndarray

    def __len__(self) -> int:
        return len(self.seq_clip)

    def span(self, s: int) -> slice:
        return slice(int(self.seq_start[s]), int(self.seq_start[s + 1]))

    def lengths(self) -> np.ndarray:
        return np.diff(self.seq_start)


def split_clips(section: Mapping[str, Any]) -> dict[str, list[str]]:
    """{split: clips}. Test and validation clips are named in the config; training gets every other clip."""
    known = clip_names()
    test, val = list(section["test_clips"]), list(section["val_clips"])
    for name in test + val:
        clip_path(name)     # raises with the list of known clips
    if set(test) & set(val):
        raise UserError(f"lift.test_clips and lift.val_clips share {sorted(set(test) & set(val))}; a clip "
                        "belongs to one split")
    exclude = set(section.get("exclude_clips") or [])
    train = [c for c in known if c not in set(test) | set(val) | exclude]
    if not train:
        raise UserError("no training clips left; remove some from lift.test_clips / val_clips / exclude_clips")
    return {"train": train, "val": val, "test": test}


def _seed(*parts: Any) -> int:
    """A stable seed from names and numbers (hash() differs between interpreter runs)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def build_split(split: str, clips: list[str], section: Mapping[str, Any], seed: int) -> Sequences:
    fps = float(section["fps"])
    noise = NoiseModel.from_config(section["noise"])
    aug = section["augment"]
    train = split == "train"
    speeds = [float(s) for s in aug["speeds"]] if train else [1.0]
    bodies = int(aug["bodies"]) if train else 1
    n_cams = int(section["cameras"][split])
    variety = section["cameras"].get("train_variety") if train else None
    rig = {"distance": tuple(variety["distance"]), "focal": tuple(variety["focal"]),
           "sizes": tuple(tuple(s) for s in variety["sizes"])} if variety else {}
    parts = []
    for clip in clips:
        for speed in speeds:
            base = clip_joints(clip, fps, speed)
            for body in range(bodies):
                rng = np.random.default_rng(_seed(seed, split, clip, speed, body))
                world = scale_bones(base, rng, float(aug["bone_spread"])) if train and body > 0 else base
                target = world[:, 0].mean(0)          # cameras look at the clip's mean pelvis position
                for c in range(n_cams):
                    cam = virtual_camera(rng, target, f"{clip}-{c}", **rig)
                    cam_joints = cam.to_camera(world)
                    kp, sc = detect(cam.project(world), cam.size, noise, rng)
                    parts.append((clip, c, cam, kp, sc, cam_joints))
    starts = np.concatenate([[0], np.cumsum([len(p[3]) for p in parts])]).astype(np.int64)
    return Sequences(
        keypoints=np.concatenate([p[3] for p in parts]).astype(np.float32),
        scores=np.concatenate([p[4] for p in parts]).astype(np.float32),
        joints=np.concatenate([p[5] for p in parts]).astype(np.float32),
        seq_start=starts, seq_clip=np.array([p[0] for p in parts]), seq_camera=np.array([p[1] for p in parts]),
        size=np.array([p[2].size for p in parts], dtype=np.int64), K=np.stack([p[2].K for p in parts]))


def save(seqs: Sequences, path: Path) -> str:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **seqs.__dict__)
    return file_sha256(path)


def load(prepared: Path, split: str) -> Sequences:
    path = Path(prepared) / f"{split}.npz"
    if not path.exists():
        raise UserError(f"{prepared}: no {split}.npz; run `sciformer prepare -d poses -o {prepared}` first")
    with np.load(path) as z:
        return Sequences(**{k: z[k] for k in z.files})


def prepare_synthetic(section: Mapping[str, Any], seed: int, out_dir: Path) -> dict[str, str]:
    """Write train/val/test .npz; return {file: sha256} of the clip files read and the files written."""
    out_dir = Path(out_dir)
    clips = split_clips(section)
    hashes = {f"humanoid3d_{c}.txt": file_sha256(clip_path(c)) for split in SPLITS for c in clips[split]}
    for split in SPLITS:
        hashes[f"{split}.npz"] = save(build_split(split, clips[split], section, seed), out_dir / f"{split}.npz")
    return hashes
