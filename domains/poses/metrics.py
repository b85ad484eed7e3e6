"""The field's lifting metrics, in millimetres: MPJPE, P-MPJPE (after a similarity Procrustes alignment per
frame) and N-MPJPE (after a per-frame scale), all by mmpose's `keypoint_mpjpe`, and MPJVE (VideoPose3D's mean
per-joint velocity error: first differences within each sequence). Predictions and targets are root-relative
joints [N, 17, 3] in metres."""
from __future__ import annotations

import numpy as np

from core.metrics import metric_rows

TASK = "lift-3d"


def mpjve(pred: np.ndarray, gt: np.ndarray, seq_start: np.ndarray) -> float:
    errs = []
    for lo, hi in zip(seq_start[:-1], seq_start[1:]):
        if hi - lo > 1:
            errs.append(np.linalg.norm(np.diff(pred[lo:hi], axis=0) - np.diff(gt[lo:hi], axis=0), axis=-1).ravel())
    return float(np.concatenate(errs).mean()) if errs else float("nan")


def lifting_metrics(pred: np.ndarray, gt: np.ndarray, seq_start: np.ndarray | None = None,
                    valid: np.ndarray | None = None) -> dict[str, float]:
    """{mpjpe, p_mpjpe, n_mpjpe, mpjve} in mm (mpjve: mm per frame). `valid` [N] leaves whole frames out
    (frames a pseudo ground truth lacks a joint of: a Procrustes fit needs every joint); MPJVE is then not
    computed."""
    from mmpose.evaluation.functional import keypoint_mpjpe
    pred, gt = np.asarray(pred, np.float64) * 1000.0, np.asarray(gt, np.float64) * 1000.0
    keep = np.ones(len(pred), bool) if valid is None else np.asarray(valid, bool)
    if not keep.any():
        return {"mpjpe": float("nan"), "p_mpjpe": float("nan"), "n_mpjpe": float("nan")}
    p, g = pred[keep], gt[keep]
    m = np.ones(p.shape[:2], bool)
    out = {"mpjpe": float(keypoint_mpjpe(p, g, m, "none")),
           "p_mpjpe": float(keypoint_mpjpe(p, g, m, "procrustes")),
           "n_mpjpe": float(keypoint_mpjpe(p, g, m, "scale"))}
    if seq_start is not None and keep.all():
        out["mpjve"] = mpjve(pred, gt, np.asarray(seq_start))
    return out


def rows(dataset: str, method: str, values: dict[str, float], split: str = "test", **extra) -> list[dict]:
    return metric_rows(TASK, dataset, split, method, values, **extra)
