"""Stacking (`head.forest: true`): the encoder ensemble blended with a random forest on the model's own RDKit
descriptors plus 1024-bit radius-2 Morgan count fingerprints (descriptors carry physical properties,
fingerprints the substructures that drive potency). The forest is fit on the training molecules only; the
blend weight per target is chosen on the validation molecules (grid 0, 0.1, ..., 1; weight 1 = the ensemble
alone), so a dataset where the forest does not help keeps the plain ensemble.

The forest is stored as plain arrays in the run's calibration.json (no pickle: loading a model never executes
code) and evaluated with numpy.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

WEIGHTS = np.round(np.linspace(0.0, 1.0, 11), 2)
N_TREES, MIN_LEAF = 100, 2
MORGAN_BITS = 1024


def forest_inputs(descriptors: np.ndarray, mols) -> np.ndarray:
    """[N, n_descriptors + MORGAN_BITS] float32: the model's raw descriptors, then Morgan counts."""
    from domains.molecules.features import morgan_of_mols
    return np.hstack([descriptors.astype(np.float32), morgan_of_mols(mols, 2, MORGAN_BITS, counts=True)])


def fit_forest(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    """Random forest on descriptors x [N, D] (NaN -> training median) for targets y [N, K]; JSON-safe arrays."""
    from sklearn.ensemble import RandomForestRegressor
    median = np.nan_to_num(np.nanmedian(np.where(np.isnan(x).all(0), 0, x), axis=0))
    filled = np.where(np.isnan(x), median, x).astype(np.float32)
    rf = RandomForestRegressor(n_estimators=N_TREES, min_samples_leaf=MIN_LEAF, max_features=0.33, n_jobs=1,
                               random_state=seed).fit(filled, y[:, 0] if y.shape[1] == 1 else y)
    trees = []
    for est in rf.estimators_:
        t = est.tree_
        trees.append({"left": t.children_left.tolist(), "right": t.children_right.tolist(),
                      "feature": t.feature.tolist(), "threshold": t.threshold.astype(np.float32).tolist(),
                      "value": t.value[:, :, 0].astype(np.float32).tolist()})
    return {"median": median.tolist(), "trees": trees}


def forest_predict(forest: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """Mean over the trees of each tree's leaf value: [N, K]. Same splits as sklearn (x <= threshold: left);
    sklearn compares in float32, so the input is cast to float32 first."""
    x = np.where(np.isnan(x), np.asarray(forest["median"], np.float32), x).astype(np.float32)
    rows = np.arange(len(x))
    total = None
    for tree in forest["trees"]:
        left, right = np.asarray(tree["left"]), np.asarray(tree["right"])
        feature, threshold = np.asarray(tree["feature"]), np.asarray(tree["threshold"], np.float32)
        node = np.zeros(len(x), dtype=np.int64)
        inner = left[node] >= 0
        while inner.any():
            go_left = x[rows[inner], feature[node[inner]]] <= threshold[node[inner]]
            node[inner] = np.where(go_left, left[node[inner]], right[node[inner]])
            inner = left[node] >= 0
        value = np.asarray(tree["value"], np.float64)[node]
        total = value if total is None else total + value
    return total / len(forest["trees"])


def choose_weights(y: np.ndarray, ensemble: np.ndarray, forest: np.ndarray) -> list[float]:
    """Per target, the weight w of `w * ensemble + (1 - w) * forest` with the lowest validation RMSE (ties: the
    larger w, i.e. the simpler model)."""
    out = []
    for k in range(y.shape[1]):
        errors = [np.sqrt(np.mean((w * ensemble[:, k] + (1 - w) * forest[:, k] - y[:, k]) ** 2)) for w in WEIGHTS]
        best = min(errors)
        out.append(float(max(w for w, e in zip(WEIGHTS, errors) if e <= best + 1e-12)))
    return out


def blend(stack: Mapping[str, Any] | None, ensemble: np.ndarray, inputs) -> np.ndarray:
    """`inputs`: the forest's input matrix, or a callable returning it (computed only when a weight is < 1)."""
    if not stack or stack.get("forest") is None or all(w == 1.0 for w in stack["weights"]):
        return ensemble
    w = np.asarray(stack["weights"])
    return w * ensemble + (1 - w) * forest_predict(stack["forest"], inputs() if callable(inputs) else inputs)
