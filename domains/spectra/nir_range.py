"""Is a spectrum one the NIR model can judge? Hotelling's T^2 of its PLS scores and Q, the squared residual of
its (preprocessed) spectrum off the PLS score space, against limits set on the calibration spectra at
training time -- the chemometrician's standard outlier test (Nomikos & MacGregor 1995).

Limits, for a share `nir.out_of_range_rate` (r) of in-distribution spectra flagged, r/2 for each statistic:
the (1 - r/2) quantiles of T^2 and Q over the calibration spectra, each computed out of fold (10 folds, the
baseline's own preprocessing and components): in-sample statistics are smaller than those of new spectra.
With n calibration spectra the quantile is at most the largest value, so a new in-distribution spectrum is
flagged with a chance of at least about 1 / (n + 1) per statistic (corn: 30 spectra). The parametric limits
(F for T^2, Box's chi^2 for Q) were tried first and dropped: on the tablet calibration spectra themselves
(in sample) they flagged 4.5 % where 1 % was designed (heavy tails).
A flagged spectrum gets the status `outside_calibration_range` and no prediction (e.g. spectra in other
units, or a scale the baseline's preprocessing does not remove).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import KFold

STATUS = "outside_calibration_range"


def _stats(x: np.ndarray, x_mean: np.ndarray, rotations: np.ndarray, loadings: np.ndarray,
           score_std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centred = x - x_mean
    t = centred @ rotations
    q = ((centred - t @ loadings.T) ** 2).sum(1)
    return ((t / score_std) ** 2).sum(1), q


def spectrum_stats(x_pre: np.ndarray, base: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(T^2, Q) of preprocessed spectra under the stored PLS baseline."""
    return _stats(x_pre, np.asarray(base["x_mean"]), np.asarray(base["rotations"]), np.asarray(base["x_loadings"]),
                  np.asarray(base["score_std"]))


def limits(x_pre: np.ndarray, y: np.ndarray, components: int, rate: float, seed: int) -> dict[str, float]:
    """The T^2 and Q limits from the calibration spectra (module docstring)."""
    n = len(x_pre)
    t2, q = np.empty(n), np.empty(n)
    for train, held in KFold(min(10, n), shuffle=True, random_state=seed).split(x_pre):
        pls = PLSRegression(components, scale=False).fit(x_pre[train], y[train])
        t = (x_pre[train] - pls._x_mean) @ pls.x_rotations_
        t2[held], q[held] = _stats(x_pre[held], pls._x_mean, pls.x_rotations_, pls.x_loadings_, t.std(0) + 1e-8)
    return {"t2_limit": float(np.quantile(t2, 1 - rate / 2)), "q_limit": float(np.quantile(q, 1 - rate / 2)),
            "rate": rate, "spectra": n}


def flagged(x_pre: np.ndarray, base: Mapping[str, Any], calibration: Mapping[str, Any] | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Spectra (preprocessed as the baseline's `base["preprocess"]`) outside the calibration range, and for
    each a message with the statistic(s) over their limits ("" where within); nothing is flagged for a model
    trained before these limits existed."""
    lim = (calibration or {}).get("range")
    if not lim or "x_loadings" not in base or not len(x_pre):
        return np.zeros(len(x_pre), dtype=bool), np.full(len(x_pre), "", dtype=object)
    t2, q = spectrum_stats(x_pre, base)
    over_t2, over_q = t2 > lim["t2_limit"], q > lim["q_limit"]
    messages = np.full(len(x_pre), "", dtype=object)
    for i in np.flatnonzero(over_t2 | over_q):
        parts = [f"Hotelling T^2 {t2[i]:.3g} over its limit {lim['t2_limit']:.3g}"] if over_t2[i] else []
        parts += [f"residual Q {q[i]:.3g} over its limit {lim['q_limit']:.3g}"] if over_q[i] else []
        messages[i] = " and ".join(parts) + " (limits from the calibration spectra)"
    return over_t2 | over_q, messages
