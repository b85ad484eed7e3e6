"""Report figures: per data set one frame as image | sparse input | prediction | error (model and best
baseline), and AbsRel against true depth for every method."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _maps(part: pd.DataFrame) -> dict[str, np.ndarray]:
    h, w = int(part["row"].max()) + 1, int(part["col"].max()) + 1
    grid = lambda c: part[c].to_numpy(float).reshape(h, w)   # noqa: E731  (rows are in row-major order)
    maps = {c: grid(c) for c in part.columns if c in ("sparse", "truth", "uncertainty") or c.startswith("pred_")}
    maps["image"] = np.stack([grid(c) for c in "rgb"], -1).astype(np.uint8)
    return maps


def example_figure(table: pd.DataFrame, rows: list[dict], out_dir: Path) -> Path | None:
    """Per example frame: image | input points | truth | sciformer | best baseline | sciformer's error."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pixels = table[table["kind"] == "pixel"] if "kind" in table else table.iloc[:0]
    if pixels.empty:
        return None
    absrel = {(r["dataset"], r["method"]): r["value"] for r in rows if r["metric"] == "absrel"}
    names = list(dict.fromkeys(pixels["dataset"]))
    fig, axes = plt.subplots(len(names), 6, figsize=(15, 2.4 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        ex = _maps(pixels[pixels["dataset"] == name].dropna(axis=1, how="all"))
        truth = ex["truth"]
        known = truth > 0
        lo, hi = np.percentile(truth[known], [2, 98])
        base = {m: v for (d, m), v in absrel.items() if d == name and m != "sciformer"}
        best = min(base, key=base.get) if base else None
        err = np.where(known, np.abs(ex["pred_sciformer"] - truth) / np.where(known, truth, 1), np.nan)
        points = np.where(ex["sparse"] > 0, ex["sparse"], np.nan)
        panels = [(f"{name}: image", ex["image"], None), ("input points", points, "turbo"),
                  ("truth", np.where(known, truth, np.nan), "turbo"),
                  (f"sciformer (AbsRel {absrel.get((name, 'sciformer'), np.nan):.3f})", ex["pred_sciformer"], "turbo")]
        if best:
            panels.append((f"{best} ({base[best]:.3f})", ex[f"pred_{best}"], "turbo"))
        panels.append(("sciformer |error| / depth (0-0.3)", err, "magma"))
        for ax, (title, img, cmap) in zip(row, panels):
            if cmap is None:
                ax.imshow(img)
            else:
                ax.imshow(img, cmap=cmap, **({"vmin": 0, "vmax": 0.3} if cmap == "magma" else {"vmin": lo, "vmax": hi}))
            ax.set_title(title, fontsize=8)
        for ax in row:
            ax.axis("off")
    return _save(fig, Path(out_dir) / "pointclouds_examples.png")


def figures(table: pd.DataFrame, rows: list[dict], out_dir: Path) -> list[Path]:
    out = [example_figure(table, rows, Path(out_dir)), error_vs_depth(table, Path(out_dir))]
    return [p for p in out if p is not None]


def error_vs_depth(table: pd.DataFrame, out_dir: Path) -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = table[table["kind"] == "depth_bin"] if "kind" in table else table.iloc[:0]
    bins = bins.astype({"depth_lo": float, "depth_hi": float, "absrel": float})
    if bins.empty:
        return None
    datasets = list(dict.fromkeys(bins["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 2.8), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        part = bins[bins["dataset"] == name]
        for method, g in part.groupby("method", sort=False):
            centre = np.where(np.isfinite(g["depth_hi"]), (g["depth_lo"] + g["depth_hi"]) / 2, g["depth_lo"] * 1.5)
            ax.plot(centre, g["absrel"], marker="o", label=method, lw=2 if method == "sciformer" else 1)
        ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("true depth (m)")
    axes[0][0].set_ylabel("AbsRel")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, Path(out_dir) / "pointclouds_error_vs_depth.png")


def _save(fig, path: Path) -> Path:
    from core.io import save_figure
    return save_figure(fig, path, dpi=90)
