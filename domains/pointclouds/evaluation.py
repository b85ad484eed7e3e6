"""Model vs the classical baselines on the same frames: unseen-mesh test scenes per sensor pattern, and the
real Aloe scene. Baseline settings are chosen on the validation frames of the same sensor pattern (lowest
mean AbsRel; Aloe has no validation split, so it uses those synthetic choices too); nothing is chosen on
test frames. Speed is megapixels of dense output per second of the whole completion (from the sparse
depth image: outlier filter, interpolation / features + network), one thread, timed alike for all.
"""
from __future__ import annotations

import json
import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from core.metrics import metric_rows
from core.progress import Progress
from domains.pointclouds import baselines, depth_metrics
from domains.pointclouds.data import Frames
from domains.pointclouds.features import featurize
from domains.pointclouds.training import predict_samples

TASK = "depth-completion"
DEPTH_BINS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, np.inf)   # metres: error vs depth in the report
EXAMPLE_PATTERNS = ("lidar32", "sfm")   # one frame of each per scene set goes into the table pixel by pixel


def frame_ids(frames: Frames, pattern: str, min_points: int, limit: int | None = None) -> list[int]:
    n = len(frames) if limit is None else min(limit, len(frames))
    return [i for i in range(n) if frames.points(pattern, i) >= min_points]


def tune(val: Frames, pattern: str, method: str, ids: Sequence[int]) -> tuple[dict[str, Any], float]:
    """The setting of `method` with the lowest mean AbsRel on the validation frames `ids`."""
    best, best_score = None, np.inf
    cache: dict[str, list[np.ndarray]] = {}
    knn: dict[str, list[tuple]] = {}
    for setting in baselines.settings_grid(method):
        key = setting["outliers"]
        if key not in cache:   # the outlier filter (and bilateral's neighbour search) is shared by settings
            cache[key] = [baselines.filtered(val.sparse(pattern, i), val.K[i], key) for i in ids]
            if method == "bilateral":
                knn[key] = [baselines.neighbours_of(s, val.images[i]) if np.any(s > 0) else None
                            for s, i in zip(cache[key], ids)]
        params = {k: v for k, v in setting.items() if k != "outliers"}
        extra = [{"knn": n} for n in knn[key]] if method == "bilateral" else [{}] * len(ids)
        preds = [baselines.METHODS[method](s, val.images[i], **params, **e)
                 for s, i, e in zip(cache[key], ids, extra)]
        score = depth_metrics.mean_metrics(preds, [val.depths[i] for i in ids])["absrel"]
        if score < best_score - 1e-12:   # ties keep the earlier (simpler) setting
            best, best_score = setting, score
    return best, best_score


def run_baseline(frames: Frames, pattern: str, ids, method: str, setting) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    preds = [baselines.complete(method, frames.sparse(pattern, i), frames.images[i], frames.K[i], setting) for i in ids]
    return preds, time.perf_counter() - start


def run_model(models, frames: Frames, pattern: str, ids, patch: int, batch_size: int = 8):
    """(depths, uncertainties in metres, seconds): featurization timed with the network."""
    start = time.perf_counter()
    samples = [featurize(frames.sparse(pattern, i), frames.images[i], frames.K[i]) for i in ids]
    out = predict_samples(models, samples, patch, batch_size)
    seconds = time.perf_counter() - start
    return [d for d, _ in out], [d * b for d, b in out], seconds


def _depth_bins(dataset: str, method: str, preds, truths) -> list[dict]:
    rows = []
    for lo, hi in zip(DEPTH_BINS[:-1], DEPTH_BINS[1:]):
        errs = [np.abs(p[(t > lo) & (t <= hi)] - t[(t > lo) & (t <= hi)]) / t[(t > lo) & (t <= hi)]
                for p, t in zip(preds, truths)]
        errs = np.concatenate(errs) if errs else np.zeros(0)
        if len(errs):
            rows.append({"dataset": dataset, "method": method, "kind": "depth_bin", "depth_lo": lo, "depth_hi": hi,
                         "absrel": float(errs.mean()), "pixels": len(errs)})
    return rows


def _pixels(dataset: str, frame: int, image, sparse, truth, unc, preds: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One example frame as table rows (kind = pixel), for the report's maps."""
    rows, cols = np.mgrid[0:truth.shape[0], 0:truth.shape[1]]
    return pd.DataFrame({"dataset": dataset, "kind": "pixel", "frame": frame, "row": rows.ravel(),
                         "col": cols.ravel(), **{c: image[..., k].ravel() for k, c in enumerate("rgb")},
                         "sparse": sparse.ravel(), "truth": truth.ravel(), "uncertainty": unc.ravel(),
                         **{f"pred_{m}": p.ravel() for m, p in preds.items()}})


def evaluate(cfg: Mapping[str, Any], prepared, members, progress: bool = True) -> tuple[list[dict], pd.DataFrame]:
    """(metric rows, table: per-frame metrics, AbsRel per depth bin, example frames pixel by pixel)."""
    torch.set_num_threads(int(cfg["train"].get("threads", 1)))
    meta = members[0].metadata["task"]
    models, patch, min_points = [m.model for m in members], int(meta["patch"]), int(meta["min_points"])
    ev = cfg["evaluate"]
    methods = list(ev["baselines"])
    val, test = Frames(prepared, "val"), Frames(prepared, "test")
    sets = [("unseen-meshes", test, ev.get("test_frames"))]
    if cfg["aloe"]["use"]:
        sets.append(("aloe", Frames(prepared, "aloe"), None))
    rows, table, example_maps, chosen = [], [], [], {}
    patterns = [p for p in cfg["sensors"]["patterns"] if p in test.patterns]
    bar = Progress(len(patterns) * len(sets), "evaluate", "set", enabled=progress)
    for pattern in patterns:
        val_ids = frame_ids(val, pattern, min_points, ev.get("tune_frames"))
        for method in methods:
            chosen[(method, pattern)], _ = tune(val, pattern, method, val_ids)
        for set_name, frames, limit in sets:
            dataset = f"{set_name}-{pattern}"
            ids = frame_ids(frames, pattern, min_points, limit)
            if not ids:
                continue
            truths = [frames.depths[i] for i in ids]
            n_pixels = sum(t.size for t in truths)
            depth, unc, seconds = run_model(models, frames, pattern, ids, patch)
            results = {"sciformer": (depth, seconds)}
            for method in methods:
                results[method] = run_baseline(frames, pattern, ids, method, chosen[(method, pattern)])
            for method, (preds, secs) in results.items():
                if set_name == "aloe":
                    scale = float(frames.arrays["disparity_scale"])
                    m = {k: v for k, v in depth_metrics.mean_metrics(preds, truths).items()
                         if k in ("absrel", "delta1")}   # scale-free; the rest in disparity pixels
                    m.update(depth_metrics.disparity_metrics(preds, truths, scale))
                else:
                    m = depth_metrics.mean_metrics(preds, truths)
                m["megapixels_per_s"] = n_pixels / 1e6 / max(secs, 1e-9)
                if method == "sciformer":
                    m["error_uncertainty_spearman"] = depth_metrics.error_uncertainty_spearman(preds, truths, unc)
                extra = {} if method == "sciformer" else {"settings": json.dumps(chosen[(method, pattern)])}
                rows += metric_rows(TASK, dataset, "test", method, {**m, "frames": len(ids)}, **extra)
                for i, p, t in zip(ids, preds, truths):
                    table.append({"dataset": dataset, "method": method, "kind": "frame", "frame": i,
                                  **depth_metrics.frame_metrics(p, t)})
                if set_name != "aloe":
                    table += _depth_bins(dataset, method, preds, truths)
            if pattern in EXAMPLE_PATTERNS:
                example_maps.append(_pixels(dataset, ids[0], frames.images[ids[0]], frames.sparse(pattern, ids[0]),
                                      truths[0], unc[0], {k: v[0][0] for k, v in results.items()}))
            bar.update(1)
    bar.close()
    return rows, pd.concat([pd.DataFrame(table), *example_maps], ignore_index=True)
