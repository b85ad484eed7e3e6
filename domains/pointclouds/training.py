"""Training the depth-completion model on the core trainer, and running trained members on samples.

Every (training view, sensor pattern) pair is one example: one model for all sensors. Early stopping
minimizes the mean AbsRel of the validation frames (all patterns; unseen-in-training meshes, see
scenes.split), the metric the issue targets.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from core.ensemble import mean_and_spread
from core.errors import UserError
from core.task import TrainingTask
from core.train import to_device
from domains.pointclouds.data import Frames
from domains.pointclouds.features import Sample
from domains.pointclouds.model import Collate, build, loss, unpatch


def metadata(cfg: Mapping[str, Any]) -> dict[str, Any]:
    m = cfg["model"]
    return {"kind": "depth-completion", "patch": int(m["patch"]), "point_hidden": int(m["point_hidden"]),
            "decoder_hidden": int(m["decoder_hidden"]), "predict": dict(cfg["predict"]),
            "encoder": dict(cfg["encoder"]), "min_points": int(m["min_points"]),
            "patterns": list(cfg["sensors"]["patterns"])}


def usable(frames: Frames, pattern: str, i: int, min_points: int) -> bool:
    return frames.points(pattern, i) >= min_points


def samples_of(frames: Frames, patterns: Sequence[str], min_points: int, with_truth: bool,
               limit: int | None = None) -> tuple[list[Sample], list[tuple[int, str]]]:
    """(samples, (frame index, pattern) of each) of the frames with enough points under each pattern."""
    out, keys = [], []
    n = len(frames) if limit is None else min(limit, len(frames))
    for p in patterns:
        for i in range(n):
            if usable(frames, p, i, min_points):
                out.append(frames.sample(p, i, with_truth))
                keys.append((i, p))
    return out, keys


@torch.inference_mode()
def predict_samples(models: Sequence[torch.nn.Module], samples: Sequence[Sample], patch: int,
                    batch_size: int = 8, device: torch.device | str = "cpu") -> list[tuple[np.ndarray, np.ndarray]]:
    """(depth [H, W], expected absolute relative error b [H, W]) per sample: r averaged over the members,
    b = mean member b + the members' spread of r (both in log-depth units ~ relative error)."""
    collate = Collate(samples, patch)
    results = []
    for start in range(0, len(samples), batch_size):
        idx = list(range(start, min(start + batch_size, len(samples))))
        batch = to_device(collate(idx), torch.device(device))
        outs = np.stack([m(batch).float().cpu().numpy() for m in models])     # [M, Tp, pp, 2]
        r, spread = mean_and_spread(outs[..., 0])
        b = np.exp(outs[..., 1]).mean(0) + spread
        first = 0   # the head's outputs are the frames' patch tokens, frame after frame
        for i in idx:
            s = samples[i]
            h, w = s.shape
            n_patch = (-(-h // patch)) * (-(-w // patch))
            rr = unpatch(r[first:first + n_patch], h, w, patch)
            bb = unpatch(b[first:first + n_patch], h, w, patch)
            first += n_patch
            results.append(((s.z_ref * np.exp(-rr)).astype(np.float32), bb.astype(np.float32)))
    return results


def val_absrel(samples: Sequence[Sample], truths: Sequence[np.ndarray], patch: int):
    """val_score for the trainer: mean per-frame AbsRel of the model on the validation samples."""
    def score(model: torch.nn.Module) -> float:
        device = next(model.parameters()).device
        preds = predict_samples([model], samples, patch, device=device)
        errs = []
        for (depth, _), truth in zip(preds, truths):
            known = truth > 0
            errs.append(np.mean(np.abs(depth[known] - truth[known]) / truth[known]))
        return float(np.mean(errs))
    return score


def build_task(cfg: Mapping[str, Any], prepared: Path) -> TrainingTask:
    meta = metadata(cfg)
    patterns, p, min_points = meta["patterns"], meta["patch"], meta["min_points"]
    train, _ = samples_of(Frames(prepared, "train"), patterns, min_points, with_truth=True)
    val_frames = Frames(prepared, "val")
    val, keys = samples_of(val_frames, patterns, min_points, with_truth=True)
    if not train or not val:
        raise UserError(f"{prepared}: no training or validation frame has {min_points}+ points; prepare more views "
                        "(scenes.views) or lower model.min_points")
    truths = [val_frames.depths[i] for i, _ in keys]
    model = build(meta)
    return TrainingTask(model, range(len(train)), range(len(val)), Collate(train, p, augment=True), loss, meta,
                        val_metric="val_absrel", val_collate=Collate(val, p), val_score=val_absrel(val, truths, p))
