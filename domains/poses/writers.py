"""Writing lifted 3D joints in the formats the input came in (Human3.6M-17 joints, millimetres, root-relative,
camera frame: x right, y down, z away from the camera), with per-joint uncertainty (calibrated per-axis
standard deviation, mm) and a per-frame status; plus a 3D skeleton figure. Every file is written atomically."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from core.errors import UserError
from core.io import atomic_path, save_figure
from domains.poses.lifting import Lifted
from domains.poses.skeleton import h36m_links, joint_names

OUTPUT_SUFFIXES = (".json", ".csv", ".npy")
UNITS = {"units": "mm", "frame": "camera (x right, y down, z forward), root-relative (pelvis = 0)",
         "uncertainty": "per-axis standard deviation in mm, calibrated on validation (90% of errors within 2.5x)"}


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 2)


def to_json(lifted: Sequence[Lifted]) -> dict:
    frames: dict[int, list] = {}
    for t in lifted:
        for i, f in enumerate(t.frames):
            frames.setdefault(int(f), []).append({
                "track_id": t.track_id, "status": str(t.status[i]),
                "keypoints_3d": [[_num(v) for v in j] for j in t.joints_mm[i]],
                "keypoint_uncertainty": [_num(v) for v in t.unc_mm[i]]})
    return {"meta_info": {"layout": "h36m", "keypoint_names": joint_names("h36m"),
                          "skeleton_links": [list(link) for link in h36m_links()], **UNITS},
            "instance_info": [{"frame_id": f, "instances": frames[f]} for f in sorted(frames)]}


def to_table(lifted: Sequence[Lifted]) -> pd.DataFrame:
    names = joint_names("h36m")
    parts = []
    for t in lifted:
        n = len(t.frames)
        parts.append(pd.DataFrame({
            "frame": np.repeat(t.frames, 17), "track_id": t.track_id, "joint": np.tile(names, n),
            "x_mm": t.joints_mm[..., 0].ravel(), "y_mm": t.joints_mm[..., 1].ravel(),
            "z_mm": t.joints_mm[..., 2].ravel(),
            "unc_mm": t.unc_mm.ravel(), "status": np.repeat(t.status, 17)}))
    return pd.concat(parts, ignore_index=True).sort_values(["frame", "track_id"], kind="stable")


def to_array(lifted: Sequence[Lifted]) -> np.ndarray:
    """[frames, 17, 4] (x, y, z, uncertainty) for one track; [tracks, frames, 17, 4] for several (NaN where a
    track is absent); frames span the input's first to last frame (array_statuses says which they are)."""
    first = min(int(t.frames.min()) for t in lifted)
    last = max(int(t.frames.max()) for t in lifted)
    out = np.full((len(lifted), last - first + 1, 17, 4), np.nan, np.float32)
    for k, t in enumerate(lifted):
        out[k, t.frames - first, :, :3] = t.joints_mm
        out[k, t.frames - first, :, 3] = t.unc_mm
    return out[0] if len(lifted) == 1 else out


def array_statuses(lifted: Sequence[Lifted]) -> dict:
    """The statuses beside a `.npy` (an array of floats cannot hold them), aligned with its frame axis: index i is
    input frame first_frame + i, "absent" where a track has no row (before it starts, after it ends, in a gap)."""
    first = min(int(t.frames.min()) for t in lifted)
    length = max(int(t.frames.max()) for t in lifted) - first + 1
    status = {}
    for t in lifted:
        row = np.full(length, "absent", dtype=object)
        row[t.frames - first] = t.status
        status[str(t.track_id)] = row.tolist()
    return {"first_frame": first, "frames": length, "tracks": [t.track_id for t in lifted], "status": status}


def write(lifted: Sequence[Lifted], path: str | Path) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise UserError(f"{path}: output must end in {', '.join(OUTPUT_SUFFIXES)}")
    with atomic_path(path) as tmp:
        if suffix == ".json":
            tmp.write_text(json.dumps(to_json(lifted)) + "\n")
        elif suffix == ".csv":
            to_table(lifted).to_csv(tmp, index=False, float_format="%.2f")
        else:
            with open(tmp, "wb") as f:
                np.save(f, to_array(lifted))
    if suffix == ".npy":   # the statuses beside the array (an array of floats cannot hold them)
        with atomic_path(path.with_suffix(".status.json")) as tmp:
            tmp.write_text(json.dumps(array_statuses(lifted)) + "\n")
    return path


def skeleton_figure(lifted: Lifted, path: str | Path, n_frames: int = 4, title: str = "") -> Path:
    """A few frames of one track as 3D skeletons (camera frame turned to y up), joints coloured by uncertainty."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = np.flatnonzero(np.isfinite(lifted.joints_mm).all((1, 2)))
    if not len(ok):
        raise UserError("no frame with a 3D prediction to draw")
    picks = ok[np.linspace(0, len(ok) - 1, min(n_frames, len(ok))).round().astype(int)]
    fig = plt.figure(figsize=(3.2 * len(picks), 3.6))
    vmax = float(np.nanpercentile(lifted.unc_mm[picks], 95))
    coloured = np.isfinite(vmax) and vmax > 0      # a ground truth (zero uncertainty) is drawn in one colour
    for k, i in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), k + 1, projection="3d")
        p = lifted.joints_mm[i]
        x, y, z = p[:, 0], p[:, 2], -p[:, 1]          # depth into the page, up is up
        for a, b in h36m_links():
            ax.plot([x[a], x[b]], [y[a], y[b]], [z[a], z[b]], color="0.3", lw=1.5)
        sc = ax.scatter(x, y, z, c=lifted.unc_mm[i] if coloured else "tab:blue", cmap="viridis" if coloured else None,
                        vmin=0 if coloured else None, vmax=vmax if coloured else None, s=14)
        r = 1000.0
        ax.set(xlim=(-r, r), ylim=(-r, r), zlim=(-r, r), xticklabels=[], yticklabels=[], zticklabels=[])
        ax.set_title(f"frame {int(lifted.frames[i])}", fontsize=9)
        ax.view_init(elev=12, azim=-70)
    if coloured:
        fig.colorbar(sc, ax=fig.axes, shrink=0.6, label="uncertainty (mm)")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=110, tight=False)
