"""Forecasting baselines on the exact windows the model is scored on: naive, seasonal naive, and the reference
ridge (the closed-form least-squares map lookback -> horizon with an L2 penalty, one map shared by every channel:
DLinear's function class). The cycle/normalized/covariate closed forms the model starts from are closedform.py.
"""
from __future__ import annotations

import numpy as np


def windows(values: np.ndarray, starts: np.ndarray, lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """values [N, C] -> lookback windows [W, L, C] and targets [W, H, C] (views stacked, no copies kept)."""
    idx = starts[:, None] + np.arange(lookback + horizon)[None]
    block = values[idx]
    return block[:, :lookback], block[:, lookback:]


def naive(x: np.ndarray, horizon: int) -> np.ndarray:
    """Repeat the last observed value."""
    return np.repeat(x[:, -1:], horizon, axis=1)


def seasonal_naive(x: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """Repeat the last full season (falls back to naive if the lookback is shorter than a period)."""
    if period <= 0 or period > x.shape[1]:
        return naive(x, horizon)
    season = x[:, -period:]
    reps = -(-horizon // period)
    return np.tile(season, (1, reps, 1))[:, :horizon]


def _design(x: np.ndarray) -> tuple[np.ndarray, int]:
    w, lookback, c = x.shape
    return x.transpose(0, 2, 1).reshape(w * c, lookback), c


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float, normalize: bool = False) -> dict:
    """Closed form W = (X'X + alpha*I)^-1 X'Y on every (window, channel) pair; intercept unpenalized.

    normalize=True fits on per-window standardized inputs/outputs (RevIN), the form the neural model's
    linear path uses.
    """
    if normalize:
        mu, sd = _stats(x)
        x, y = (x - mu) / sd, (y - mu) / sd
    a, c = _design(x)
    b = y.transpose(0, 2, 1).reshape(a.shape[0], -1)
    a_mean, b_mean = a.mean(0), b.mean(0)
    a0, b0 = a - a_mean, b - b_mean
    gram = a0.T @ a0 + alpha * np.eye(a.shape[1])
    weight = np.linalg.solve(gram, a0.T @ b0)                  # [L, H]
    return {"weight": weight, "bias": b_mean - a_mean @ weight, "normalize": normalize}


def predict_ridge(model: dict, x: np.ndarray) -> np.ndarray:
    mu, sd = _stats(x) if model["normalize"] else (0.0, 1.0)
    a, c = _design((x - mu) / sd)
    out = a @ model["weight"] + model["bias"]                  # [W*C, H]
    out = out.reshape(x.shape[0], c, -1).transpose(0, 2, 1)
    return out * sd + mu


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(1, keepdims=True), np.sqrt(x.var(1, keepdims=True) + 1e-5)


def choose_alpha(x_tr, y_tr, x_val, y_val, grid=(0.1, 1.0, 10.0, 100.0, 1000.0), normalize=False) -> float:
    """The ridge penalty with the lowest validation MSE (validation windows only; test never seen)."""
    scores = {a: float(np.mean((predict_ridge(fit_ridge(x_tr, y_tr, a, normalize), x_val) - y_val) ** 2))
              for a in grid}
    return min(scores, key=scores.get)
