"""Model vs baselines on the same test windows (forecasting) or the same test series (classification).

Forecast errors are on the train-standardized scale over every test window, step and channel, as the
long-horizon literature reports them (so ETTh1 numbers compare with published tables).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.config import Config
from core.domain import LoadedModel
from core.errors import UserError
from core.runs import member_outputs
from domains.timeseries import baselines as B
from domains.timeseries import classify as CL
from domains.timeseries import conformal
from domains.timeseries import forecast as F
from domains.timeseries.domain import rows_for

SAMPLE_WINDOWS = 3   # test windows kept for the forecast plots


def _errors(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    ok = ~np.isnan(y)
    return {"mse": float(np.mean((pred[ok] - y[ok]) ** 2)), "mae": float(np.mean(np.abs(pred[ok] - y[ok])))}


def evaluate_forecast(cfg: Config, prepared: Path, members: list[LoadedModel]):
    meta = members[0].metadata["task"]
    p = F.Prepared(prepared, meta)
    if p.targets != meta["targets"]:
        raise UserError(f"{prepared}: prepared series {p.targets} differ from the model's {meta['targets']}")
    lb, h, period = meta["lookback"], meta["horizon"], meta["period"]
    st_test = p.starts(2, lb, h)
    x, y = B.windows(p.z, st_test, lb, h)
    pred = F.predict_windows(members, p.z, p.exo, st_test)
    cal = F.calibration(members)
    quant = F.quantile_forecasts(members, pred, F.score_scale(members, cal["scale"], p.z, p.exo, st_test,
                                                              fallback=cal["median_scale"]))
    lo, hi = quant[min(quant)], quant[max(quant)]
    ok = ~np.isnan(y)
    method = f"sciformer-{meta['arch']}"
    split = f"test-{len(st_test)}-windows"
    task = f"forecast-{h}"
    rows = rows_for(task, meta["dataset"], split, method, {
        **_errors(y, pred), "coverage_p10_p90": conformal.coverage(y[ok], lo[ok], hi[ok]),
        "pinball": conformal.pinball(y[ok], {q: v[ok] for q, v in quant.items()})})

    # baselines: fitted on training rows/windows only, scored on the same test windows
    lin = F.ridge_setup(p, lb, h, 0, cfg["forecast.ridge_alphas"])
    x_np = np.nan_to_num(x)
    base = {"naive": B.naive(x_np, h), "ridge": F.ridge_forecast(lin, x_np, st_test, lb, h)}
    # seasonal naive needs the whole season inside the lookback: the cycle if it fits, else one day
    season = period if 0 < period <= lb else F.steps_per_day(p.info["freq"])
    if season:
        base[f"seasonal-naive-{season}"] = B.seasonal_naive(x_np, h, season)
    if period:
        cyc = F.ridge_setup(p, lb, h, period, cfg["forecast.ridge_alphas"])
        base[f"ridge-cycle-{period}"] = F.ridge_forecast(cyc, x_np, st_test, lb, h)
    for name, bp in base.items():
        rows += rows_for(task, meta["dataset"], split, name, _errors(y, bp))

    # a few test windows for the plots: history, truth, forecast and band, in the data's own units
    keep = np.unique(np.linspace(0, len(st_test) - 1, SAMPLE_WINDOWS).astype(int))
    raw = {k: p.scaler.inverse(v[keep]) for k, v in {"history": x, "truth": y, "forecast": pred, "lower": lo,
                                                       "upper": hi, "ridge": base["ridge"]}.items()}
    frames = []
    for i, w in enumerate(keep):
        for c, name in enumerate(p.targets):
            hist = pd.DataFrame({"window": w, "series": name, "step": np.arange(-lb, 0),
                                 "truth": raw["history"][i, :, c]})
            fut = pd.DataFrame({"window": w, "series": name, "step": np.arange(h),
                                **{k: v[i, :, c] for k, v in raw.items() if k != "history"}})
            frames += [hist, fut]
    return rows, pd.concat(frames, ignore_index=True)


def class_probabilities(members: list[LoadedModel], series: list[np.ndarray], batch: int = 64) -> np.ndarray:
    meta = members[0].metadata["task"]
    ex = CL.make_examples(series, np.zeros(len(series), int), np.array(meta["mean"]), np.array(meta["std"]))
    logits = member_outputs(members, ex, CL.collate, batch, empty_shape=(0, len(meta["classes"])))
    return sum(torch.softmax(torch.from_numpy(x), -1).numpy() for x in logits) / len(members)


def evaluate_classify(cfg: Config, prepared: Path, members: list[LoadedModel]):
    d = CL.load(prepared)
    test = d["split"] == "test"
    fit = ~test   # the baseline has no use for a validation set: give it train + val
    series = d["series"]
    y = d["labels"][test]
    probs = {"sciformer-transformer": class_probabilities(members, [s for s, t in zip(series, test) if t]),
             "summary-stats-logreg": CL.fit_predict_baseline([s for s, f in zip(series, fit) if f], d["labels"][fit],
                                                             [s for s, t in zip(series, test) if t], int(cfg["seed"]))}
    dataset = members[0].metadata["task"]["dataset"]
    rows = []
    for method, pr in probs.items():
        rows += rows_for("classify", dataset, "uea-test", method,
                         {"accuracy": CL.accuracy(y, pr), "log_loss": CL.log_loss(y, pr)})
    classes = d["classes"]
    out = pd.DataFrame({"length": d["lengths"][test], "truth": classes[y]})
    for method, pr in probs.items():
        out[f"pred_{method}"] = classes[pr.argmax(1)]
    return rows, out
