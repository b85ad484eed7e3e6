"""Classical property-prediction baselines to put learned models in context.

* ``mean``: predicts the training-set mean of each target (the floor any model must beat).
* ``rf-rdkit2d``: random forest on RDKit 2D descriptors (NaN -> training median).
* ``rf-morgan``: random forest on 2048-bit radius-2 Morgan fingerprints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from domains.molecules.features import morgan_fingerprints, rdkit_descriptors

BASELINES = ("mean", "rf-rdkit2d", "rf-morgan")


def _impute_by_train_median(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace NaNs in both matrices by the *training* column medians (no test leakage)."""
    all_nan = np.all(np.isnan(x_train), axis=0)
    med = np.zeros(x_train.shape[1], dtype=np.float64)
    # nanmedian warns on all-NaN columns; those get 0 (the column is then constant).
    med[~all_nan] = np.nanmedian(x_train[:, ~all_nan], axis=0)
    fill = lambda x: np.where(np.isnan(x), med, x).astype(np.float32)  # noqa: E731
    return fill(x_train), fill(x_test)


def _fit_rf(x_train: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int, n_estimators: int) -> np.ndarray:
    rf = RandomForestRegressor(n_estimators=n_estimators, n_jobs=1, random_state=seed)
    # sklearn wants 1-D y for a single target (2-D with one column warns).
    rf.fit(x_train, y[:, 0] if y.shape[1] == 1 else y)
    return np.asarray(rf.predict(x_test), dtype=np.float64).reshape(len(x_test), y.shape[1])


def fit_predict_baselines(
    train_smiles: Sequence[str],
    y_train: np.ndarray,
    test_smiles: Sequence[str],
    seed: int = 0,
    n_estimators: int = 500,
    methods: Sequence[str] = BASELINES,
) -> dict[str, np.ndarray]:
    """Fit each baseline on (train_smiles, y_train) and predict test_smiles.

    ``y_train`` is [N] or [N, K] and must be finite; every returned array is
    [M, K] float64 (K=1 for 1-D input).
    """
    unknown = set(methods) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baselines {sorted(unknown)}; choose from {BASELINES}")
    y = np.asarray(y_train, dtype=np.float64)
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if y.ndim != 2 or len(y) != len(train_smiles):
        raise ValueError(f"y_train must be [N] or [N, K] with N={len(train_smiles)}, got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y_train contains NaN/inf; clean the dataset first")

    preds: dict[str, np.ndarray] = {}
    for method in methods:
        if method == "mean":
            preds[method] = np.tile(y.mean(axis=0), (len(test_smiles), 1))
        elif method == "rf-rdkit2d":
            x_tr, _ = rdkit_descriptors(train_smiles)
            x_te, _ = rdkit_descriptors(test_smiles)
            x_tr, x_te = _impute_by_train_median(x_tr.astype(np.float64), x_te.astype(np.float64))
            preds[method] = _fit_rf(x_tr, y, x_te, seed, n_estimators)
        elif method == "rf-morgan":
            x_tr = morgan_fingerprints(train_smiles)
            x_te = morgan_fingerprints(test_smiles)
            preds[method] = _fit_rf(x_tr, y, x_te, seed, n_estimators)
    return preds
