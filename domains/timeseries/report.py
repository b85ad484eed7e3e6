"""Report figures for the timeseries domain: forecast plots (history, forecast, conformal band, truth) or,
for classification, accuracy by series length."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: reports are made by pipelines, not at a screen
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from core.io import save_figure  # noqa: E402


def save(fig, out_dir: Path) -> list[Path]:
    # one name whatever the task, so the workflow can declare it
    return [save_figure(fig, Path(out_dir) / "figures.png", tight=False)]


def forecast_figure(pred: pd.DataFrame, metrics: list[dict]):
    """One panel per (test window, series): the lookback, the truth, our forecast with its p10-p90 band,
    and ridge for comparison."""
    ours = {r["metric"]: r["value"] for r in metrics if r["method"].startswith("sciformer")
            and not r["method"].endswith("-no-transformer") and r["split"].startswith("test")}
    keys = list(pred.groupby(["window", "series"], sort=False).groups)
    windows, series = sorted({w for w, _ in keys}), list(dict.fromkeys(s for _, s in keys))
    fig, axes = plt.subplots(len(series), len(windows), figsize=(4.5 * len(windows), 2.8 * len(series)),
                             squeeze=False)
    for (w, s), part in pred.groupby(["window", "series"], sort=False):
        ax = axes[series.index(s)][windows.index(w)]
        hist, fut = part[part.step < 0], part[part.step >= 0]
        ax.plot(hist.step, hist.truth, color="0.4", lw=1, label="history")
        ax.plot(fut.step, fut.truth, color="k", lw=1, label="truth")
        ax.fill_between(fut.step, fut.lower, fut.upper, color="tab:blue", alpha=0.25, label="p10-p90")
        ax.plot(fut.step, fut.forecast, color="tab:blue", lw=1.3, label="sciformer")
        ax.plot(fut.step, fut.ridge, color="tab:orange", lw=1, ls="--", label="ridge")
        ax.set_title(f"{s}, test window {w}", fontsize=9)
        ax.axvline(0, color="0.7", lw=0.8)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Test forecasts: MSE {ours.get('mse', float('nan')):.3f}, p10-p90 coverage "
                 f"{ours.get('coverage_p10_p90', float('nan')):.2f} (standardized units)", fontsize=10)
    fig.tight_layout()
    return fig


def length_figure(pred: pd.DataFrame):
    """Test accuracy by series length (variable-length sets) for every method."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = pd.qcut(pred["length"], q=min(5, pred["length"].nunique()), duplicates="drop")
    for col in [c for c in pred.columns if c.startswith("pred_")]:
        acc = (pred[col] == pred["truth"]).groupby(bins, observed=True).mean()
        ax.plot([str(i) for i in acc.index], acc.to_numpy(), marker="o", label=col.removeprefix("pred_"))
    ax.set_xlabel("series length (quantile bins)")
    ax.set_ylabel("test accuracy")
    ax.legend()
    fig.tight_layout()
    return fig
