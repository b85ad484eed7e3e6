"""Model vs baselines and ablations on the same windows (forecasting) or the same test series (classification).

Forecast errors are on the train-standardized scale over every window, step and channel (observed targets), as
the long-horizon literature reports them (so ETTh1 numbers compare with published tables). Every method that
could be chosen also gets its validation rows (split `val-N-windows`): the headline of a benchmark is the
method with the lowest validation MSE, never the one with the lowest test MSE.

Forecasting methods:
- `sciformer-<arch>`: the model (p10-p90 band from the conformal scale chosen on validation; the other scales'
  coverage and pinball are reported as `coverage_p10_p90_<scale>`, `pinball_<scale>`);
- `sciformer-<arch>-no-transformer`: the trained model with its transformer branch zeroed (its trained linear
  path and cycle only);
- `closed-form`: the best closed form without covariates (cycle, input scale and penalty chosen on validation);
- `closed-form-exo`: the best one with the covariates and calendar features as linear terms;
- `ridge`: the plain shared ridge map (penalty chosen on validation); `naive`; `seasonal-naive-<n>`.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config
from core.domain import LoadedModel
from core.errors import UserError
from core.metrics import accuracy, log_loss, metric_rows
from domains.timeseries import baselines as B
from domains.timeseries import classify as CL
from domains.timeseries import closedform as CF
from domains.timeseries import conformal
from domains.timeseries import data as D
from domains.timeseries import forecast as F

SAMPLE_WINDOWS = 3   # test windows kept for the forecast plots


def _errors(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    ok = ~np.isnan(y)
    return {"mse": float(np.mean((pred[ok] - y[ok]) ** 2)), "mae": float(np.mean(np.abs(pred[ok] - y[ok])))}


@contextmanager
def transformer_off(members: list[LoadedModel]):
    """The ablation: every member's transformer correction zeroed, its trained linear path and cycle kept."""
    for m in members:
        m.model.transformer_on = False
    try:
        yield
    finally:
        for m in members:
            m.model.transformer_on = True


def bands(members, inputs, pred: np.ndarray, starts: np.ndarray, y: np.ndarray) -> tuple[dict, dict]:
    """(quantile forecasts of the chosen scale, {coverage/pinball of every calibrated scale})."""
    h = members[0].metadata["task"]["horizon"]
    has = starts >= h
    earlier = np.zeros_like(pred)
    earlier[has] = F.predict_windows(members, inputs, starts[has] - h)
    ok = ~np.isnan(y)
    chosen_scale = F.calibration(members)["scale"]
    extra, chosen = {}, None
    for how in conformal.SCALES:
        cal = F.calibration(members, how)
        s = F.score_scale(members, how, inputs, starts, fallback=cal["median_scale"], earlier=earlier)
        q = conformal.apply_offsets(pred, s, cal["offsets"])
        extra[f"coverage_p10_p90_{how}"] = conformal.coverage(y[ok], q[min(q)][ok], q[max(q)][ok])
        extra[f"pinball_{how}"] = conformal.pinball(y[ok], {k: v[ok] for k, v in q.items()})
        chosen = q if how == chosen_scale else chosen
    return chosen, extra


def seasonal_period(p: F.Prepared, lookback: int) -> int:
    """Seasonal naive repeats the last day (or week, for daily data) when it fits in the lookback."""
    for cycle in ("day", "week"):
        keys = D.cycle_keys(p.time[: p.borders[0][1]], cycle)
        if keys and len(keys) <= lookback:
            return len(keys)
    return 0


def evaluate_forecast(cfg: Config, prepared: Path, members: list[LoadedModel]):
    meta = members[0].metadata["task"]
    p = F.Prepared(prepared, meta)
    if p.targets != meta["targets"]:
        raise UserError(f"{prepared}: prepared series {p.targets} differ from the model's {meta['targets']}")
    lb, h = meta["lookback"], meta["horizon"]
    inputs = p.inputs(meta)
    dataset, task, method = meta["dataset"], f"forecast-{h}", f"sciformer-{meta['arch']}"
    split_starts = {"val": p.starts(1, lb, h), "test": p.starts(2, lb, h)}
    cal = F.calibration(members)
    started_from = CF.Spec(meta["cycle"]["name"], meta["linear_norm"], meta["linear_exo"]).label()
    ours_settings = f"{started_from},alpha={meta['closed_form']['alpha']},conformal={cal['scale']}"

    closed = {}   # closed forms: refitted from the candidates' validation table saved with the run
    table = meta["closed_form_candidates"]
    for name, ok in (("closed-form", lambda s: not s.exo), ("closed-form-exo", lambda s: s.exo),
                     ("ridge", lambda s: s == CF.Spec())):
        found = CF.best_in_table(table, ok)
        if found:
            closed[name] = CF.fit_spec(p, lb, h, *found)

    rows, preds = [], {}
    for split, st in split_starts.items():
        label = f"{split}-{len(st)}-windows"
        y = p.window_targets(st, lb, h)
        pred = F.predict_windows(members, inputs, st)
        with transformer_off(members):
            no_tf = F.predict_windows(members, inputs, st)
        metrics = _errors(y, pred)
        if split == "test":
            quant, extra = bands(members, inputs, pred, st, y)
            ok = ~np.isnan(y)
            metrics.update({"coverage_p10_p90": conformal.coverage(y[ok], quant[min(quant)][ok], quant[max(quant)][ok]),
                            "pinball": conformal.pinball(y[ok], {k: v[ok] for k, v in quant.items()}), **extra})
            preds = {"truth": y, "forecast": pred, "lower": quant[min(quant)], "upper": quant[max(quant)]}
        rows += metric_rows(task, dataset, label, method, metrics, settings=ours_settings)
        rows += metric_rows(task, dataset, label, f"{method}-no-transformer", _errors(y, no_tf),
                            settings=started_from)
        for name, fit in closed.items():
            cf_pred = CF.predict(fit, p, st, lb, h)
            rows += metric_rows(task, dataset, label, name, _errors(y, cf_pred),
                                settings=f"{fit['spec'].label()},alpha={fit['alpha']}")
            if split == "test" and name == "ridge":
                preds["ridge"] = cf_pred
        if split == "test":
            x = inputs["z_in"][st[:, None] + np.arange(lb)[None]]
            rows += metric_rows(task, dataset, label, "naive", _errors(y, B.naive(x, h)))
            season = seasonal_period(p, lb)
            if season:
                rows += metric_rows(task, dataset, label, f"seasonal-naive-{season}",
                                    _errors(y, B.seasonal_naive(x, h, season)))
            preds["history"] = x
    return rows, plot_frame(p, split_starts["test"], preds, lb, h)


def plot_frame(p: F.Prepared, st: np.ndarray, preds: dict, lb: int, h: int) -> pd.DataFrame:
    """A few test windows for the plots: history, truth, forecast, band and ridge, in the data's own units."""
    keep = np.unique(np.linspace(0, len(st) - 1, SAMPLE_WINDOWS).astype(int))
    raw = {k: p.scaler.inverse(v[keep]) for k, v in preds.items()}
    frames = []
    for i, w in enumerate(keep):
        for c, name in enumerate(p.targets):
            frames.append(pd.DataFrame({"window": w, "series": name, "step": np.arange(-lb, 0),
                                        "truth": raw["history"][i, :, c]}))
            frames.append(pd.DataFrame({"window": w, "series": name, "step": np.arange(h),
                                        **{k: v[i, :, c] for k, v in raw.items() if k != "history"}}))
    return pd.concat(frames, ignore_index=True)


def evaluate_classify(cfg: Config, prepared: Path, members: list[LoadedModel]):
    d = CL.load(prepared)
    test = d["split"] == "test"
    fit = ~test   # the baselines have no use for a validation set: give them train + val
    series, seed = d["series"], int(cfg["seed"])
    train_x, train_y = [s for s, f in zip(series, fit) if f], d["labels"][fit]
    test_x, y = [s for s, t in zip(series, test) if t], d["labels"][test]
    probs = {"sciformer-transformer": CL.class_probabilities(members, test_x),
             "summary-stats-logreg": CL.fit_predict_baseline(train_x, train_y, test_x, seed)}
    accuracy_only = {}
    if cfg.get("classify.minirocket", True):
        from domains.timeseries.minirocket import minirocket_peers
        peers = minirocket_peers(train_x, train_y, test_x, len(d["classes"]), seed)
        probs.update({k: v["proba"] for k, v in peers.items()})
        accuracy_only = {k: v["predicted"] for k, v in peers.items() if v.get("predicted") is not None}
    dataset = members[0].metadata["task"]["dataset"]
    rows = []
    for method, pr in probs.items():
        acc = float(np.mean(accuracy_only[method] == y)) if method in accuracy_only else accuracy(y, pr)
        rows += metric_rows("classify", dataset, "uea-test", method, {"accuracy": acc, "log_loss": log_loss(y, pr)})
    classes = d["classes"]
    out = pd.DataFrame({"length": d["lengths"][test], "truth": classes[y]})
    for method, pr in probs.items():
        out[f"pred_{method}"] = classes[accuracy_only[method] if method in accuracy_only else pr.argmax(1)]
    return rows, out
