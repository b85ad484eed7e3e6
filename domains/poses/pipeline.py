"""The lift task's data preparation and calibration as plain functions (LiftTask's hooks call them; training,
ensembles and run directories are the core's): the config's cross-field rules, prepare (synthetic splits +
the real clips' pseudo ground truth), and the uncertainty calibration on validation."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.config import Config
from core.io import atomic_path, read_json, write_json
from domains.poses import data, real
from domains.poses.data import DATA_KEYS
from domains.poses.model import ensemble_sigma, sigma_scale
from domains.poses.training import predict_frames


def check_config(values: Mapping[str, Any]) -> list[str]:
    lift, problems = values["lift"], []
    m = lift["model"]
    if m["hot"] and m["hot_prune_after"] >= values["encoder"]["n_layers"]:
        problems.append(f"lift.model.hot_prune_after: must be below encoder.n_layers ({values['encoder']['n_layers']})")
    if m["hot"] and m["hot_keep"] >= m["window"]:
        problems.append(f"lift.model.hot_keep: must be below lift.model.window ({m['window']}) to prune anything")
    if (values["encoder"]["d_model"] // values["encoder"]["n_heads"]) % 2:
        problems.append("encoder: d_model / n_heads must be even (rotary over frames)")
    return problems


def data_key(cfg: Config) -> str:
    """What the prepared data depend on (so a benchmark can reuse a prepared folder)."""
    import hashlib
    section = cfg.to_dict()["lift"]
    picked = {k: section.get(k) for k in DATA_KEYS}
    return hashlib.sha256(json.dumps([picked, int(cfg["seed"])], sort_keys=True).encode()).hexdigest()


def prepared_key(prepared: Path) -> str | None:
    path = Path(prepared) / "prepared.json"
    return read_json(path).get("data_key") if path.exists() else None


def prepare(cfg: Config, out_dir: Path) -> dict[str, str]:
    """Synthetic splits (FK + cameras + noise) and the real clips' pseudo ground truth."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "prepared.json").unlink(missing_ok=True)
    section = cfg.to_dict()["lift"]
    hashes = data.prepare_synthetic(section, int(cfg["seed"]), out_dir)
    if section["real"]["clips"]:
        hashes.update(prepare_real(section, out_dir))
    write_json(out_dir / "prepared.json", {"data_key": data_key(cfg), "hashes": hashes})
    return hashes


def prepare_real(section: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    from core.io import file_sha256
    cams = real.calibration()
    dets = real.load_detections()
    arrays = {"R": np.stack([c.R for c in cams]), "t": np.stack([c.t for c in cams]),
              "K": np.stack([c.K for c in cams])}
    for clip in section["real"]["clips"]:
        gt = real.pseudo_ground_truth(dets[clip], cams, float(section["real"]["min_score"]),
                                      float(section["real"]["max_error_px"]))
        for key, value in gt.items():
            arrays[f"{clip}/{key}"] = value
        arrays[f"{clip}/sizes"] = dets[clip]["sizes"]
        arrays[f"{clip}/fps"] = np.float32(dets[clip]["fps"])
    with atomic_path(Path(out_dir) / "real.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return {real.CACHE.name: file_sha256(real.CACHE), "real.npz": file_sha256(Path(out_dir) / "real.npz")}


def calibrate(members: list[Any], val) -> dict[str, Any]:
    """Scale of the predicted sigma so that 90% of validation joint errors fall within 2.50 sigma (chi, 3 dof),
    on the ensemble-mean predictions."""
    outs = np.stack([predict_frames(m.model, val.inputs, val.seq_start, int(m.metadata["task"]["window"]),
                                    device=m.device) for m in members])
    err = np.linalg.norm(outs[..., :3].mean(0) - val.targets, axis=-1)
    sigma = ensemble_sigma(outs)
    return {"sigma_scale": sigma_scale(err, sigma), "coverage": 0.9, "val_frames": int(len(err))}
