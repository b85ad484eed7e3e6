"""Stacking for clip classification (`classify.pool_mfcc: true`): the transformer ensemble's class probabilities
pooled with those of a logistic regression on utterance-level MFCC statistics.

The two views fail on different clips: the transformer reads the time course of the log-mel frames (and
confuses English and Spanish prompts of the one voice that speaks both), the MFCC statistics summarize timbre
(and confuse very short clips). Log-linear pooling, p ~ p_transformer^w * p_mfcc^(1 - w), combines them.

Everything is chosen on the validation clips, never on test clips: the regression's C by validation log-loss
(fit on the training clips), then w on the grid 0, 0.1, ..., 1 by validation log-loss of the pooled
probabilities (ties: the larger w, the transformer alone at 1). The regression is then refit on train +
validation with that C, as the MFCC baseline is. It is stored as plain arrays in the run's calibration.json
(no pickle: loading a model never executes code).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.metrics import log_loss

WEIGHTS = np.round(np.linspace(0.0, 1.0, 11), 2)


def pool(p_model: np.ndarray, p_mfcc: np.ndarray, w: float) -> np.ndarray:
    """Log-linear pooling of two [N, K] probability arrays, renormalized per row."""
    logp = w * np.log(np.clip(p_model, 1e-12, 1.0)) + (1 - w) * np.log(np.clip(p_mfcc, 1e-12, 1.0))
    logp -= logp.max(1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(1, keepdims=True)


def choose_weight(y: np.ndarray, p_model: np.ndarray, p_mfcc: np.ndarray) -> tuple[float, list[float]]:
    """The pooling weight with the lowest validation log-loss (ties: the larger weight) and every weight's loss."""
    losses = [log_loss(y, pool(p_model, p_mfcc, w)) for w in WEIGHTS]
    best = min(losses)
    return float(max(w for w, loss in zip(WEIGHTS, losses) if loss <= best + 1e-12)), losses


def fit_pool(feats: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], p_val: np.ndarray,
             seed: int) -> dict[str, Any]:
    """feats/labels: MFCC statistics and class indices of the train and val clips; p_val: the networks'
    validation probabilities [N, K]. Returns the JSON-safe pool (weight, C, the regression's arrays)."""
    from domains.audio.classify import fit_logreg
    final, c, mfcc_val = fit_logreg(feats["train"], labels["train"], feats["val"], labels["val"], seed)
    k = p_val.shape[1]
    if mfcc_val.shape[1] < k:                      # classes absent from train and val: probability 0
        mfcc_val = np.pad(mfcc_val, ((0, 0), (0, k - mfcc_val.shape[1])))
    w, losses = choose_weight(labels["val"], p_val, mfcc_val)
    scaler, lr = final[0], final[1]
    coef, intercept = lr.coef_, lr.intercept_
    if len(lr.classes_) == 2:      # sklearn fits two classes as one sigmoid: the softmax of [0, z] is the same
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    return {"weight": w, "C": c, "val_log_loss": dict(zip([float(v) for v in WEIGHTS], losses)),
            "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "classes": lr.classes_.tolist(),
            "coef": coef.tolist(), "intercept": intercept.tolist()}


def mfcc_probabilities(mfcc_pool: Mapping[str, Any], feats: np.ndarray, n_classes: int) -> np.ndarray:
    """The stored regression's class probabilities for MFCC statistics [N, F] (sklearn's multinomial softmax)."""
    z = (feats - np.asarray(mfcc_pool["mean"])) / np.asarray(mfcc_pool["scale"])
    logits = z @ np.asarray(mfcc_pool["coef"]).T + np.asarray(mfcc_pool["intercept"])
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    out = np.zeros((len(feats), n_classes))
    out[:, mfcc_pool["classes"]] = p / p.sum(1, keepdims=True)
    return out


def pooled(mfcc_pool: Mapping[str, Any] | None, p_model: np.ndarray, clips: list[np.ndarray], sr: int,
           feats: np.ndarray | None = None) -> np.ndarray:
    """The model's probabilities: the networks' pooled with the MFCC regression where the run has a pool with a
    weight below 1. The clips' MFCC statistics are computed only then (or passed in as `feats`)."""
    if not mfcc_pool or float(mfcc_pool["weight"]) >= 1.0 or not len(p_model):
        return p_model
    if feats is None:
        from domains.audio.classify import mfcc_stats
        feats = np.stack([mfcc_stats(c, sr) for c in clips])
    return pool(p_model, mfcc_probabilities(mfcc_pool, feats, p_model.shape[1]), float(mfcc_pool["weight"]))


def class_probabilities(members, examples: list[dict], batch: int = 32) -> np.ndarray:
    """The model's class probabilities [N, K]: the networks pooled with the run's MFCC regression, if it has one."""
    from domains.audio.classify_task import encoder_probabilities
    mfcc_pool = (members[0].metadata.get("calibration") or {}).get("mfcc_pool")
    return pooled(mfcc_pool, encoder_probabilities(members, examples, batch), [e["audio"] for e in examples],
                   members[0].metadata["task"]["sample_rate"])


def calibrate_classify(cfg, prepared: Path, members) -> dict[str, Any] | None:
    """The run's MFCC pool, fitted as the module docstring says (None when classify.pool_mfcc is false)."""
    if not cfg["classify.pool_mfcc"]:
        return None
    from domains.audio.classify import mfcc_stats
    from domains.audio.classify_task import encoder_probabilities, fold_examples
    from domains.audio.prepare import load_prepared
    manifest, clips, sr = load_prepared(prepared)
    classes = members[0].metadata["task"]["classes"]
    folds = {f: fold_examples(manifest, clips, classes, f) for f in ("train", "val")}
    feats = {f: np.stack([mfcc_stats(e["audio"], sr) for e in ex]) for f, ex in folds.items()}
    labels = {f: np.array([e["y"] for e in ex]) for f, ex in folds.items()}
    p_val = encoder_probabilities(members, folds["val"])
    return {"mfcc_pool": fit_pool(feats, labels, p_val, int(cfg["seed"]))}
