"""Ensemble aggregation, in one place for every task: the members' outputs -> the prediction and its spread.

Outputs come as an array [members, N, ...] (see ``core.runs.member_outputs``) or, for variable-size outputs
(depth maps of different images, enhanced clips of different lengths), as one list per member of per-item
arrays. The spread is the members' standard deviation (population, ddof=0): the uncertainty every
`<target>_unc` column reports.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def mean_and_spread(outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[members, N, ...] -> (mean [N, ...], std [N, ...]); one member has spread 0."""
    outputs = np.asarray(outputs, dtype=np.float64)
    return outputs.mean(0), outputs.std(0)


def mean_and_spread_items(outputs: Sequence[Sequence[np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One list per member of per-item arrays (shapes may differ between items, not between members)."""
    if not outputs:
        return []
    n = len(outputs[0])
    if any(len(o) != n for o in outputs):
        raise ValueError("every member must give one output per item")
    return [mean_and_spread(np.stack([member[i] for member in outputs])) for i in range(n)]


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def class_probabilities(logits: np.ndarray) -> np.ndarray:
    """[members, N, classes] logits -> [N, classes]: the mean of the members' probabilities (not of their
    logits: averaging probabilities is the ensemble's predictive distribution)."""
    return softmax(logits, -1).mean(0)
