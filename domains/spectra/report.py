"""Report figures of the spectra domain (fixed file names, so the workflow can list them)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: reports are made by pipelines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.io import save_figure  # noqa: E402
from domains.spectra.model import LIFETIME_TARGETS  # noqa: E402

LABELS = {"tau1": "tau1 (ns)", "tau2": "tau2 (ns)", "a": "A", "tau_m": "tau_m (ns)"}
PHOTON_SETS = ("sim-100-1000", "sim-1k-10k", "sim-10k-100k")


def _methods(predictions: pd.DataFrame) -> list[str]:
    return sorted({c.split("_pred_", 1)[1] for c in predictions.columns if "_pred_" in c},
                  key=lambda m: (not m.startswith("sciformer"), m))


def lifetime_figures(predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
    """error_vs_photons.png (MAE per photon-count bin over the three photon regimes of the FLI-Net setting,
    training prior) and scatter.png (predicted vs true on the main test set, model and Poisson MLE)."""
    methods = _methods(predictions)
    ind = predictions[predictions.dataset.isin(PHOTON_SETS)]
    if ind.empty:
        ind = predictions
    edges = np.geomspace(max(ind.photons.min(), 1), ind.photons.max() * 1.0001, 9)
    mid = np.sqrt(edges[:-1] * edges[1:])
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for ax, t in zip(axes, LIFETIME_TARGETS):
        which = np.digitize(ind.photons, edges) - 1
        for m in methods:
            err = np.abs(ind[f"{t}_pred_{m}"] - ind[t])
            curve = [err[which == b].mean() if (which == b).any() else np.nan for b in range(len(mid))]
            ax.plot(mid, curve, marker="o" if m.startswith("sciformer") else ".", label=m,
                    lw=2 if m.startswith("sciformer") else 1)
        ax.set_xscale("log")
        ax.set_xlabel("photons per pixel")
        ax.set_ylabel(f"MAE {LABELS[t]}")
        ax.set_title(f"{t}: error vs photon count")
    axes[0].legend(fontsize=8)
    paths = [save_figure(fig, out_dir / "error_vs_photons.png")]
    main = predictions[predictions.dataset == predictions.dataset.iloc[0]]
    shown = [m for m in methods if m.startswith("sciformer")][:1] + (["mle"] if "mle" in methods else [])
    fig, axes = plt.subplots(len(shown), 4, figsize=(16, 4 * len(shown)), squeeze=False)
    for row, m in zip(axes, shown):
        for ax, t in zip(row, LIFETIME_TARGETS):
            ax.scatter(main[t], main[f"{t}_pred_{m}"], s=5, alpha=0.4)
            lo, hi = float(main[t].min()), float(main[t].max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
            mae = float(np.mean(np.abs(main[f"{t}_pred_{m}"] - main[t])))
            ax.set_title(f"{m}: {t} (MAE {mae:.3f})")
            ax.set_xlabel(f"true {LABELS[t]}")
            ax.set_ylabel(f"predicted {LABELS[t]}")
    paths.append(save_figure(fig, out_dir / "scatter.png"))
    return paths


def nir_parity(predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
    """parity.png: predicted vs measured on the test set, model and PLS."""
    rmsep = {r["method"]: r["value"] for r in metrics if r["metric"] == "rmsep"}
    target = next(c for c in predictions.columns if "_pred_" not in c and "_unc_" not in c and c != "dataset")
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for m in _methods(predictions):
        ax.scatter(predictions[target], predictions[f"{target}_pred_{m}"], s=16, alpha=0.7,
                   marker="o" if m.startswith("sciformer") else "x", label=f"{m} (RMSEP {rmsep.get(m, np.nan):.3g})")
    lo, hi = float(predictions[target].min()), float(predictions[target].max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"measured {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(f"{predictions.dataset.iloc[0]}: test set ({len(predictions)} samples)")
    ax.legend()
    return [save_figure(fig, out_dir / "parity.png")]
