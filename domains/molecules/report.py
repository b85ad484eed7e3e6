"""Report figures for the molecules domain."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: reports are made by pipelines, not at a screen
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from core.io import save_figure  # noqa: E402


def parity_plot(predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
    """`parity.png`: predicted vs measured on the test split for our model and the best baseline,
    one panel per target (one file whatever the targets, so the workflow can name it)."""
    rmse = {(r["task"].removeprefix("regression-"), r["method"]): r["value"] for r in metrics if r["metric"] == "rmse"}
    targets = sorted({t for t, _ in rmse})
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 5), squeeze=False)
    for ax, target in zip(axes[0], targets):
        baselines = {m: v for (t, m), v in rmse.items() if t == target and not m.startswith("sciformer")}
        best = min(baselines, key=baselines.get) if baselines else None
        y = predictions[target]
        for method, marker in (("sciformer", "o"), (best, "x")):
            if method is None or f"{target}_pred_{method}" not in predictions:
                continue
            ax.scatter(y, predictions[f"{target}_pred_{method}"], s=14, marker=marker, alpha=0.7,
                       label=f"{method} (RMSE {rmse[(target, method)]:.3f})")
        lo, hi = float(y.min()), float(y.max())
        pad = 0.05 * (hi - lo + 1e-9)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1)
        ax.set_xlabel(f"measured {target}")
        ax.set_ylabel(f"predicted {target}")
        ax.set_title(f"Parity on the test split ({len(y)} molecules)")
        ax.legend(loc="upper left")
    return [save_figure(fig, Path(out_dir) / "parity.png", dpi=110)]
