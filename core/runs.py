"""Run directories: a trained model is an ensemble of members, each a checkpoint directory.

    run_dir/run.json        domain, stage, resolved config, member list (written last: marks completion)
    run_dir/member_<k>/     model.safetensors + meta.json of ensemble member k (seed = base seed + k)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from typing import Callable, Sequence

import numpy as np
import torch

from core.checkpoint import load_meta, load_weights
from core.domain import Domain, LoadedModel
from core.errors import UserError
from core.io import read_json

RUN_FILE = "run.json"
CALIBRATION_FILE = "calibration.json"   # Domain.calibrate's result, shared by every member


def member_dirs(run_dir: Path) -> list[Path]:
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).exists():
        return [run_dir / m for m in read_json(run_dir / RUN_FILE)["members"]]
    if (run_dir / "meta.json").exists():  # a single checkpoint directory
        return [run_dir]
    raise UserError(f"{run_dir}: not a trained model (no {RUN_FILE} or meta.json); "
                    "pass the directory written by `sciformer train -o DIR`")


def run_info(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).exists():
        return read_json(run_dir / RUN_FILE)
    member_dirs(run_dir)  # raises the "not a trained model" error for anything else
    meta = load_meta(run_dir)
    return {"members": ["."], "domain": meta.get("domain"), "stage": meta.get("stage")}


def check_domain(run_dir: Path, domain: Domain) -> None:
    trained_for = run_info(run_dir).get("domain")
    if trained_for and trained_for != domain.name:
        raise UserError(f"{run_dir}: this model was trained for domain {trained_for!r}, not {domain.name!r}; "
                        f"use --domain {trained_for} or another --model")


def check_final_stage(run_dir: Path, domain: Domain) -> None:
    stage = run_info(run_dir).get("stage")
    if stage and stage != domain.stages[-1]:
        raise UserError(f"{run_dir}: this is a {stage!r} run (it initializes training); pass the run directory "
                        f"of the final stage ({domain.stages[-1]!r}), e.g. the -o of `sciformer train`")


def load_members(domain: Domain, run_dir: Path, device: torch.device) -> list[LoadedModel]:
    check_domain(run_dir, domain)
    check_final_stage(run_dir, domain)
    calibration_path = Path(run_dir) / CALIBRATION_FILE
    calibration = read_json(calibration_path) if calibration_path.exists() else None
    return load_members_from(domain, member_dirs(run_dir), device, calibration)


def load_members_from(domain: Domain, paths: list[Path], device: torch.device,
                      calibration: dict | None = None) -> list[LoadedModel]:
    members = []
    for path in paths:
        meta = load_meta(path)
        if "train_seconds" not in meta:
            raise UserError(f"{path}: training of this member did not finish; rerun `sciformer train` (it resumes)")
        model = domain.build_model(meta["task"])
        load_weights(model, path)
        model.to(device).eval()
        if calibration is not None:
            meta["calibration"] = calibration
        members.append(LoadedModel(model=model, metadata=meta, path=path, device=device))
    return members


@torch.no_grad()
def member_outputs(members: list[LoadedModel], examples: Sequence[Any], collate: Callable[[list[Any]], dict],
                   batch_size: int, empty_shape: tuple[int, ...] = (0,)) -> np.ndarray:
    """Every member's raw outputs on `examples`, batch by batch: [members, N, ...] (float32).
    Domains turn these into their predictions (mean and spread, probabilities, target units)."""
    from core.train import to_device
    outs = []
    for member in members:
        parts = [member.model(to_device(collate(list(examples[i:i + batch_size])), member.device)).float().cpu().numpy()
                 for i in range(0, len(examples), batch_size)]
        outs.append(np.concatenate(parts) if parts else np.zeros(empty_shape, dtype=np.float32))
    return np.stack(outs)
