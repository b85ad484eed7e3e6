"""Report figures: metrics vs SNR for every enhancement method; the confusion matrix of voice identification."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.io import save_figure


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def enhance_figures(predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
    """PESQ, STOI and SI-SDR against the test SNR, one line per method (the per-bucket means of the rows)."""
    plt = _plt()
    rows = pd.DataFrame(metrics)
    rows = rows[rows.split.str.startswith("unseen-voices-snr")].copy()
    if rows.empty:
        return []
    rows["snr"] = rows.split.str.replace("unseen-voices-snr", "", regex=False).astype(float)
    shown = [m for m in ("pesq", "stoi", "si_sdr", "dnsmos") if m in set(rows.metric)]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.4))
    for ax, metric in zip(np.atleast_1d(axes), shown):
        part = rows[rows.metric == metric]
        for method, line in part.groupby("method"):
            line = line.sort_values("snr")
            ax.plot(line.snr, line.value, "o-", label=method, lw=2.5 if method == "sciformer" else 1.2)
        ax.set_xlabel("input SNR (dB)")
        ax.set_title(metric.upper().replace("_", "-"))
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("speech enhancement on unseen voices")
    return [save_figure(fig, out_dir / "enhance_metrics_vs_snr.png", dpi=110)]


def classify_figures(predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
    """Confusion matrix of the model on the test clips (rows: true label; columns: predicted)."""
    plt = _plt()
    if "pred_sciformer" not in predictions or predictions.empty:
        return []
    truth = predictions["label" if "label" in predictions else "voice"]   # "voice": files written before own labels
    classes = sorted(set(truth) | set(predictions.pred_sciformer))
    counts = pd.crosstab(truth, predictions.pred_sciformer).reindex(index=classes, columns=classes,
                                                                                fill_value=0)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    ax.imshow(counts.to_numpy(), cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(counts.iat[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    voices = any(r.get("dataset", "").startswith("asterisk-prompts") for r in metrics)
    ax.set_title("voice / language identification (test prompts)" if voices else "classification (test recordings)")
    return [save_figure(fig, out_dir / "classify_confusion.png", dpi=110)]
