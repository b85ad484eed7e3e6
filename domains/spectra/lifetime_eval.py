"""Evaluation of the lifetime task: the model and every baseline on the same pixels of each test set.

Every fitter gets the knowledge the model was trained with and nothing more: the training prior's lifetime
ranges as bounds (MLEs, lsq), the training prior itself (Bayes, prior_median), the test set's acquisition
setting (gates, gate width, laser period) and the IRF the test set provides (the true one, or the one
estimated from the data in the out-of-distribution IRF set).

Speed: pixels/s of the whole call (counts and IRFs in, estimates out) on `train.threads` torch threads (set
here; recorded in every row). Each method is timed `REPEATS` times -- the per-pixel fitters on the thirds of
their accuracy run, the batched ones on whole runs (the model on >= `lifetime.timing_pixels`, the test set tiled) -- and
reports the median and the range. Every speed ratio of a test set divides by the ONE median of the reference
fitter on that set (`speedup_vs_mle`: the scipy per-pixel MLE; `speedup_vs_fast_mle`: the batched MLE).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.config import Config
from core.domain import LoadedModel
from core.metrics import metric_rows
from domains.spectra import bayes, fit
from domains.spectra.flim import FlimSetting
from domains.spectra.lifetime import predict_arrays, prior_of, test_sets
from domains.spectra.model import LIFETIME_TARGETS

REPEATS = 3
PER_PIXEL = {"mle", "lsq", "flimlib", "bayes"}   # slow fitters: timed on the thirds of their accuracy run
UNTIMED = {"prior_median"}                        # a constant: no speed to report


def estimators() -> dict:
    return {**fit.ESTIMATORS, "bayes": bayes.posterior_median}


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def run_baseline(name: str, counts: np.ndarray, irf: np.ndarray, setting: FlimSetting) -> tuple[dict, list[float]]:
    """(estimates, pixels/s of each timing)."""
    fn = estimators()[name]
    if name in PER_PIXEL:
        parts, speeds = [], []
        for idx in np.array_split(np.arange(len(counts)), min(REPEATS, len(counts))):
            out, seconds = _timed(fn, counts[idx], irf[idx], setting)
            parts.append(out)
            speeds.append(len(idx) / max(seconds, 1e-9))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, speeds
    out, seconds = _timed(fn, counts, irf, setting)
    if name in UNTIMED:
        return out, []
    speeds = [len(counts) / max(seconds, 1e-9)]
    speeds += [len(counts) / max(_timed(fn, counts, irf, setting)[1], 1e-9) for _ in range(REPEATS - 1)]
    return out, speeds


def model_speeds(members: list[LoadedModel], counts: np.ndarray, irf: np.ndarray, setting: FlimSetting,
                 min_pixels: int) -> list[float]:
    reps = max(1, -(-min_pixels // len(counts)))
    counts, irf = np.tile(counts, (reps, 1)), np.tile(irf, (reps, 1))
    predict_arrays(members, counts[:8192], irf[:8192], setting)   # warm-up
    return [len(counts) / _timed(predict_arrays, members, counts, irf, setting)[1] for _ in range(REPEATS)]


def evaluate(cfg: Config, prepared: Path, members: list[LoadedModel]) -> tuple[list[dict], pd.DataFrame]:
    threads = int(cfg["train.threads"])
    torch.set_num_threads(threads)
    meta = members[0].metadata["task"]
    method = f"sciformer-{meta['encoder']['attention']}"
    prior = prior_of(meta)
    n_base = int(cfg["lifetime.baseline_pixels"])
    baselines = [b for b in cfg["lifetime.baselines"] if b != "flimlib" or fit.flimlib_available()]
    rows, frames = [], []
    for dataset, s, data in test_sets(prepared):
        n = min(len(data["counts"]), n_base) if n_base else len(data["counts"])
        counts, irf = data["counts"][:n], data["irf"][:n]   # every method is scored on these same pixels
        # the fitters' knowledge: the training prior, this set's acquisition setting
        known = prior.with_(gates=s.gates, gate_ps=s.gate_ps, period_ns=s.period_ns)
        preds = {method: predict_arrays(members, counts, irf, known)}
        speeds = {method: model_speeds(members, counts, irf, known, int(cfg["lifetime.timing_pixels"]))}
        for name in baselines:
            preds[name], speeds[name] = run_baseline(name, counts, irf, known)
        reference = {ref: float(np.median(speeds[ref])) for ref in ("mle", "fast_mle") if speeds.get(ref)}
        frame = pd.DataFrame({"dataset": dataset, "photons": data["photons"][:n], "irf_shape": data["shape"][:n],
                              "mono": data["mono"][:n], **{t: data[t][:n] for t in LIFETIME_TARGETS}})
        for name, p in preds.items():
            values = {f"{t}_mae": float(np.mean(np.abs(p[t] - data[t][:n]))) for t in LIFETIME_TARGETS}
            if speeds[name]:
                med = float(np.median(speeds[name]))
                values.update(pixels_per_s=med, pixels_per_s_min=min(speeds[name]), pixels_per_s_max=max(speeds[name]))
                values.update({f"speedup_vs_{ref}": med / v for ref, v in reference.items()})
            rows += metric_rows("lifetime", dataset, "test", name, values, threads=threads, pixels=n)
            for t in LIFETIME_TARGETS:
                frame[f"{t}_pred_{name}"] = p[t]
        frames.append(frame)
    return rows, pd.concat(frames, ignore_index=True)
