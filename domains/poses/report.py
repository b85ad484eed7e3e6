"""Report figures of the lift task: error per joint and per clip (ours vs the peers) on the unseen motions,
and the real clips' P-MPJPE per method."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.io import save_figure
from domains.poses.evaluation import EXAMPLE
from domains.poses.lifting import Lifted
from domains.poses.skeleton import joint_names
from domains.poses.writers import skeleton_figure


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path, dpi=110, tight=False, bbox_inches="tight")


def figures(predictions: pd.DataFrame, metrics: list[dict], out_dir: Path, artifacts: Path | None = None) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir = Path(out_dir)
    written = []
    per_joint = [c for c in predictions.columns if c.startswith("err_j")]
    if per_joint:
        method = per_joint[0].split("_", 2)[2]
        values = predictions[[f"err_j{j}_{method}" for j in range(17)]].mean().to_numpy()
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.bar(range(17), values, color="tab:blue")
        ax.set_xticks(range(17), joint_names("h36m"), rotation=70, fontsize=7)
        ax.set_ylabel("mean error (mm)")
        ax.set_title(f"{method}: error per joint, unseen test motions", fontsize=9)
        written.append(_save(fig, out_dir / "error_per_joint.png"))
    cols = [c for c in predictions.columns if c.startswith("mpjpe_")]
    if cols:
        table = predictions.groupby("clip")[cols].mean()
        table.columns = [c[len("mpjpe_"):] for c in cols]
        fig, ax = plt.subplots(figsize=(7, 3))
        table.plot.bar(ax=ax, rot=0)
        ax.set_ylabel("MPJPE (mm)")
        ax.set_title("MPJPE per unseen test motion", fontsize=9)
        written.append(_save(fig, out_dir / "mpjpe_per_clip.png"))
    real = pd.DataFrame([r for r in metrics if str(r["dataset"]).startswith("real-") and r["metric"] == "p_mpjpe"])
    if not real.empty:
        pivot = real.pivot_table(index="method", columns="dataset", values="value")
        fig, ax = plt.subplots(figsize=(7, 3))
        pivot.plot.barh(ax=ax)
        ax.set_xlabel("P-MPJPE (mm) vs triangulated MediaPipe keypoints")
        ax.set_title("Real clips (Pose2Sim demo), monocular from each camera", fontsize=9)
        written.append(_save(fig, out_dir / "real_p_mpjpe.png"))
    example = Path(artifacts) / EXAMPLE if artifacts else None
    if example is not None and example.exists():
        written += skeletons(example, out_dir)
    return written


def skeletons(example: Path, out_dir: Path) -> list[Path]:
    """One unseen test sequence as 3D skeletons: our prediction (joints coloured by uncertainty) and the truth."""
    z = np.load(example)
    n = len(z["pred_mm"])
    frames = np.arange(n)
    ours = Lifted(0, frames, z["pred_mm"], z["unc_mm"], np.full(n, "ok"))
    truth = Lifted(0, frames, z["gt_mm"], np.zeros(z["unc_mm"].shape, np.float32), np.full(n, "ok"))
    clip = str(z["clip"])
    return [skeleton_figure(ours, out_dir / "skeleton_predicted.png", title=f"{clip} (unseen): predicted"),
            skeleton_figure(truth, out_dir / "skeleton_truth.png", title=f"{clip} (unseen): ground truth")]


def summary_table(metrics: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame([r for r in metrics if "clip" not in r or pd.isna(r.get("clip"))])
    return frame.pivot_table(index="method", columns=["dataset", "metric"], values="value", aggfunc="first") \
        if not frame.empty else frame

