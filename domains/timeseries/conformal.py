"""Split-conformal forecast quantiles, pinball loss and coverage.

Scores are residuals divided by a per-window scale known at forecast time (locally adaptive conformal):
- `none`: plain residuals;
- `lookback_std`: the spread of the lookback window;
- `lagged_error`: the RMS error of the forecast issued one horizon earlier, whose targets are already observed
  at forecast time, so bands widen after recent misses and narrow after recent hits.
One offset per (horizon step, channel, quantile): the finite-sample conformal order statistic of the
validation scores.

Which scale (`forecast.conformal_scale: auto`, the default) is decided on validation only, by a rule fixed in
advance (`choose_scale`): the validation windows are cut in time into a fitting part and a later checking part
(a horizon apart, so no target row is in both); offsets fitted on the first part are applied to the second,
and the scale with the lowest pinball loss there wins (pinball is a proper score for quantiles: it rewards
coverage and narrow bands together). The final offsets are then fitted on all validation windows.
"""
from __future__ import annotations

import numpy as np

SCALES = ("none", "lookback_std", "lagged_error")
FLOOR = 1e-3   # flat windows / perfect past forecasts must not give zero-width bands


def window_scale(x: np.ndarray, how: str = "lookback_std") -> np.ndarray:
    """Per-window, per-channel score scale [W, 1, C] from the lookback windows x [W, L, C]: 1, or their
    spread. (`lagged_error` needs earlier forecasts: see lagged_error_scale.)"""
    if how == "none":
        return np.ones((x.shape[0], 1, x.shape[2]))
    if how == "lookback_std":
        return np.maximum(x.std(1, keepdims=True), FLOOR)
    raise ValueError(f"window_scale computes 'none' or 'lookback_std', not {how!r}")


def lagged_error_scale(truth: np.ndarray, earlier_pred: np.ndarray) -> np.ndarray:
    """RMS over the horizon of the earlier forecast's (observed) errors: [W, H, C] -> [W, 1, C]; 1 (the
    standardized scale) where none of them was observed."""
    sq = (truth - earlier_pred) ** 2
    seen = (~np.isnan(sq)).sum(1, keepdims=True)
    rms = np.sqrt(np.nansum(sq, axis=1, keepdims=True) / np.maximum(seen, 1))
    return np.maximum(np.where(seen > 0, rms, 1.0), FLOOR)


def _order_statistic(sorted_scores: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """The finite-sample conformal quantile of `n` observed scores sorted first along axis 0 (NaN last)."""
    # upper quantiles round up, lower ones down: each one-sided bound keeps >= its nominal coverage
    rank = np.ceil((n + 1) * q) if q >= 0.5 else np.floor((n + 1) * q)
    rank = np.clip(rank, 1, np.maximum(n, 1)).astype(int) - 1
    return np.take_along_axis(sorted_scores, rank[None], 0)[0]


def fit_offsets(pred: np.ndarray, y: np.ndarray, scale: np.ndarray, quantiles) -> dict[str, list]:
    """Validation forecasts/targets [W, H, C] (NaN = missing target) -> {str(q): offsets [H, C]} in scale units.
    A channel observed fewer than twice at a step (a sensor down for the whole validation period) gets the
    offsets of all channels' scores at that step."""
    scores = (y - pred) / scale
    observed = (~np.isnan(scores)).sum(0)                       # [H, C]
    if observed.max(initial=0) < 2:
        raise ValueError("conformal calibration needs at least 2 validation windows with observed targets")
    by_column = np.sort(scores, axis=0)
    steps = scores.shape[1]
    pooled_scores = np.sort(scores.transpose(0, 2, 1).reshape(-1, steps), axis=0)   # [W*C, H]
    pooled_n = (~np.isnan(pooled_scores)).sum(0)
    out = {}
    for q in quantiles:
        own = _order_statistic(by_column, observed, q)
        pooled = _order_statistic(pooled_scores, pooled_n, q)
        out[str(q)] = np.where(observed >= 2, own, np.nan_to_num(pooled, nan=0.0)[:, None]).tolist()
    return out


def apply_offsets(pred: np.ndarray, scale: np.ndarray, offsets: dict[str, list]) -> dict[float, np.ndarray]:
    return {float(q): pred + scale * np.asarray(off)[None] for q, off in offsets.items()}


def pinball(y: np.ndarray, quantile_preds: dict[float, np.ndarray]) -> float:
    """Mean quantile (pinball) loss over the quantiles given."""
    losses = []
    for q, p in quantile_preds.items():
        diff = y - p
        losses.append(np.mean(np.maximum(q * diff, (q - 1) * diff)))
    return float(np.mean(losses))


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    return float(np.mean((y >= lower) & (y <= upper)))


def choose_scale(pred: np.ndarray, y: np.ndarray, scales: dict[str, np.ndarray], quantiles,
                 horizon: int) -> dict:
    """Validation windows in time order -> {chosen, scores: {scale: {pinball, coverage}}, fold} (see the
    module docstring). With too few windows for two parts, `none` (no adaptive scale) is kept."""
    n = len(pred)
    cut = n // 2
    check = np.arange(min(cut + horizon, n), n)
    if cut < 2 or len(check) < 2 or np.isnan(y[check]).all() or np.isnan(y[:cut]).all():
        return {"chosen": "none", "scores": {}, "fold": {"fit": n, "check": 0}}
    scores = {}
    lo, hi = min(quantiles), max(quantiles)
    ok = ~np.isnan(y[check])
    for how, s in scales.items():
        off = fit_offsets(pred[:cut], y[:cut], s[:cut], quantiles)
        q = {k: v[ok] for k, v in apply_offsets(pred[check], s[check], off).items()}
        scores[how] = {"pinball": pinball(y[check][ok], q), "coverage": coverage(y[check][ok], q[lo], q[hi])}
    chosen = min(scores, key=lambda k: (scores[k]["pinball"], k))
    return {"chosen": chosen, "scores": scores, "fold": {"fit": cut, "check": len(check)}}
