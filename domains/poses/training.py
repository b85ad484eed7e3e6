"""Training our lifter with the core trainer: windows of F frames (seq2seq, every frame a target), mmpose's
VideoPoseLifting codec for the input normalization and the root-relative targets, mmpose's flip for mirroring
(training only), MPJPE on the validation clips for early stopping."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from core.domain import TrainingTask
from domains.poses.data import Sequences
from domains.poses.model import build_model, lifting_loss
from domains.poses.skeleton import h36m_flip_indices, h36m_links


@dataclass
class Encoded:
    """A split in the model's units: inputs [T, 17, 3] (normalized x, y, score), targets [T, 17, 3] (metres,
    root-relative, camera frame), plus the sequence offsets."""
    inputs: np.ndarray
    targets: np.ndarray
    seq_start: np.ndarray

    def lengths(self) -> np.ndarray:
        return np.diff(self.seq_start)


def encode_keypoints(keypoints: np.ndarray, scores: np.ndarray, size) -> np.ndarray:
    """Pixels [N, 17, 2] + scores [N, 17] of an image of `size` (w, h) -> model inputs [N, 17, 3], through
    mmpose's VideoPoseLifting codec (centre the image, divide by half its width)."""
    from mmpose.codecs import VideoPoseLifting
    codec = VideoPoseLifting(num_keypoints=17, zero_center=True, root_index=0, remove_root=False,
                             reshape_keypoints=False)
    dummy = np.zeros((len(keypoints), 17, 3), np.float32)
    enc = codec.encode(keypoints.astype(np.float32), scores.astype(np.float32), dummy, np.ones(dummy.shape[:2]),
                       camera_param={"w": float(size[0]), "h": float(size[1])})
    return np.concatenate([enc["keypoint_labels"], scores[..., None]], -1).astype(np.float32)


def root_relative(joints: np.ndarray) -> np.ndarray:
    """Camera-frame joints [N, 17, 3] -> root-relative (mmpose's zero_center at root 0)."""
    return (joints - joints[:, :1]).astype(np.float32)


def encode_split(seqs: Sequences) -> Encoded:
    inputs = np.concatenate([encode_keypoints(seqs.keypoints[seqs.span(s)], seqs.scores[seqs.span(s)], seqs.size[s])
                             for s in range(len(seqs))])
    return Encoded(inputs, root_relative(seqs.joints), seqs.seq_start)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Window starts tiling a sequence; the last window ends at the sequence's end; a sequence shorter than
    the window gets one window (edge-padded)."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def windows_of(enc: Encoded, window: int, stride: int) -> list[tuple[int, int]]:
    return [(s, st) for s, n in enumerate(enc.lengths()) for st in window_starts(int(n), window, stride)]


class WindowCollate:
    """(sequence, start) pairs -> batch {inputs [B, F, 17, 3], target, mask [B, F]}; frames past a sequence's
    end repeat its last frame (edge padding, as mmpose pads video sequences) and are masked out of the loss.
    With `flip`, each window is mirrored with probability 1/2 by mmpose's flip_keypoints_custom_center."""

    def __init__(self, enc: Encoded, window: int, flip: bool = False):
        self.enc, self.window, self.flip = enc, window, flip
        self.flip_indices = h36m_flip_indices() if flip else None

    def gather(self, items: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        idx, mask = [], []
        for s, start in items:
            lo, hi = int(self.enc.seq_start[s]), int(self.enc.seq_start[s + 1])
            frames = lo + start + np.arange(self.window)
            mask.append(frames < hi)
            idx.append(np.clip(frames, lo, hi - 1))
        return np.stack(idx), np.stack(mask)

    def __call__(self, items: list[tuple[int, int]]) -> dict[str, Any]:
        idx, mask = self.gather(items)
        inputs, target = self.enc.inputs[idx], self.enc.targets[idx]
        if self.flip:
            from mmpose.structures.keypoint import flip_keypoints_custom_center
            inputs, target = inputs.copy(), target.copy()
            for b in np.flatnonzero(np.random.random(len(items)) < 0.5):
                xy, score = flip_keypoints_custom_center(inputs[b, ..., :2], inputs[b, ..., 2], self.flip_indices,
                                                         center_mode="static", center_x=0.0)
                inputs[b] = np.concatenate([xy, score[..., None]], -1)
                target[b] = flip_keypoints_custom_center(target[b], np.ones(target.shape[1:3]), self.flip_indices,
                                                         center_mode="static", center_x=0.0)[0]
        return {"inputs": torch.from_numpy(inputs), "target": torch.from_numpy(target),
                "mask": torch.from_numpy(mask), "size": len(items)}


@torch.no_grad()
def predict_frames(forward: Callable[[dict], torch.Tensor], inputs: np.ndarray, seq_start: np.ndarray, window: int,
                   batch_size: int = 64, device: str | torch.device = "cpu") -> np.ndarray:
    """Every frame's output [T, 17, C] from overlapping windows (stride window/2); a frame's outputs from the
    windows covering it are averaged with triangular weights (a frame near a window's centre has the most
    context on both sides)."""
    enc = Encoded(inputs, np.zeros(inputs.shape, np.float32), seq_start)
    items = windows_of(enc, window, max(1, window // 2))
    collate = WindowCollate(enc, window)
    weight = np.minimum(np.arange(window) + 1, window - np.arange(window)).astype(np.float64)
    total, norm = None, np.zeros(len(inputs))
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        batch = collate(chunk)
        out = forward({"inputs": batch["inputs"].to(device)}).float().cpu().numpy()
        idx, mask = collate.gather(chunk)
        if total is None:
            total = np.zeros((len(inputs), *out.shape[2:]))
        w = weight[None, :] * mask
        np.add.at(total, idx[mask], (out * w[..., None, None])[mask])
        np.add.at(norm, idx[mask], w[mask])
    return (total / np.maximum(norm, 1e-12)[:, None, None]).astype(np.float32)


def model_metadata(section: Mapping[str, Any], encoder: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "lift", "encoder": dict(encoder), "model": dict(section["model"]), "in_channels": 3,
            "window": int(section["model"]["window"]), "skeleton_links": h36m_links(), "fps": float(section["fps"])}


def build_training(section: Mapping[str, Any], encoder: Mapping[str, Any], train: Encoded, val: Encoded,
                   batch_size: int = 64) -> TrainingTask:
    meta = model_metadata(section, encoder)
    window = meta["window"]
    model = build_model(meta)
    stride = max(1, int(window * float(section["model"]["train_stride"])))
    train_items, val_items = windows_of(train, window, stride), windows_of(val, window, window)

    def val_score(m: torch.nn.Module) -> float:
        device = next(m.parameters()).device
        pred = predict_frames(m, val.inputs, val.seq_start, window, batch_size, device)
        return float(np.linalg.norm(pred[..., :3] - val.targets, axis=-1).mean() * 1000.0)

    train_collate = WindowCollate(train, window, flip=bool(section["augment"]["flip"]))
    return TrainingTask(model, train_items, val_items, train_collate,
                        lifting_loss, meta, val_metric="val_mpjpe_mm", val_collate=WindowCollate(val, window),
                        val_score=val_score)
