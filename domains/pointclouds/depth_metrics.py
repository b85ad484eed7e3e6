"""Depth-completion metrics as the field reports them (KITTI depth completion, NYUv2): per frame over the
pixels with ground truth, then averaged over frames."""
from __future__ import annotations

import numpy as np
from scipy import stats

METRICS = ("absrel", "rmse", "mae", "irmse", "delta1")


def frame_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """AbsRel, RMSE and MAE (depth units), iRMSE (1/km when depth is in metres, as KITTI), delta < 1.25."""
    valid = truth > 0
    g = truth[valid].astype(np.float64)
    p = np.maximum(pred[valid].astype(np.float64), 1e-3 * float(np.median(g)))   # no division by 0 or < 0
    err = p - g
    ratio = np.maximum(p / g, g / p)
    return {"absrel": float(np.mean(np.abs(err) / g)), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "mae": float(np.mean(np.abs(err))), "irmse": float(np.sqrt(np.mean((1000 / p - 1000 / g) ** 2))),
            "delta1": float(np.mean(ratio < 1.25))}


def mean_metrics(preds: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, float]:
    per = [frame_metrics(p, t) for p, t in zip(preds, truths)]
    return {k: float(np.mean([m[k] for m in per])) for k in METRICS}


def disparity_metrics(preds: list[np.ndarray], truths: list[np.ndarray], scale: float) -> dict[str, float]:
    """Disparity-space errors (disparity = scale / depth, full-resolution pixels): MAE, RMSE and bad2, the
    fraction of pixels off by more than 2 pixels (Middlebury's bad 2.0), averaged over frames."""
    out = {"disp_mae": [], "disp_rmse": [], "bad2": []}
    for p, t in zip(preds, truths):
        valid = t > 0
        dp = scale / np.maximum(p[valid].astype(np.float64), 1e-9)
        dt = scale / t[valid].astype(np.float64)
        err = np.abs(dp - dt)
        out["disp_mae"].append(np.mean(err))
        out["disp_rmse"].append(np.sqrt(np.mean(err ** 2)))
        out["bad2"].append(np.mean(err > 2.0))
    return {k: float(np.mean(v)) for k, v in out.items()}


def error_uncertainty_spearman(preds, truths, uncertainties, max_pixels: int = 200_000, seed: int = 0) -> float:
    """Spearman rank correlation between the absolute relative error and the predicted uncertainty over
    all valid pixels (a subsample of at most max_pixels, seeded): 1 = errors perfectly ranked."""
    err, unc = [], []
    for p, t, u in zip(preds, truths, uncertainties):
        valid = t > 0
        err.append(np.abs(p[valid] - t[valid]) / t[valid])
        unc.append(u[valid])
    err, unc = np.concatenate(err), np.concatenate(unc)
    if len(err) > max_pixels:
        pick = np.random.default_rng(seed).choice(len(err), max_pixels, replace=False)
        err, unc = err[pick], unc[pick]
    return float(stats.spearmanr(err, unc).statistic)
