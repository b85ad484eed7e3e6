"""Metrics the fields report, and the machine label every benchmark row carries."""
from __future__ import annotations

import os
import platform
from typing import Any, Mapping

import numpy as np


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, float) - np.asarray(p, float)) ** 2)))


def mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(p, float))))


def r2(y: np.ndarray, p: np.ndarray) -> float:
    y, p = np.asarray(y, float), np.asarray(p, float)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return float(1.0 - np.sum((y - p) ** 2) / ss_tot) if ss_tot > 0 else float("nan")


REGRESSION_METRICS = {"rmse": rmse, "mae": mae, "r2": r2}


def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    """Fraction of items whose most probable class (proba [N, C]) is the label y [N] (class indices)."""
    return float(np.mean(np.asarray(proba).argmax(1) == y))


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-probability of the true class, probabilities clipped at 1e-15 (one confident miss
    costs 34.5, not infinity: scikit-learn's former default; it now clips at the float epsilon)."""
    proba = np.asarray(proba)
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-15, 1.0))))


def metric_rows(task: str, dataset: str, split: str, method: str, metrics: Mapping[str, float],
                **extra: Any) -> list[dict]:
    """Benchmark/evaluation rows in the documented convention {task, dataset, split, method, metric, value,
    machine} (+ `extra` fields such as threads), one per metric."""
    machine = machine_label()
    return [{"task": task, "dataset": dataset, "split": split, "method": method, "metric": name,
             "value": float(value), "machine": machine, **extra} for name, value in metrics.items()]


def machine_label() -> str:
    """'cpu-2core' or the GPU's name: benchmark rows are only comparable on the same machine."""
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0).replace(" ", "-").lower()
    except ImportError:
        pass
    return f"{platform.machine()}-{os.cpu_count()}core"
