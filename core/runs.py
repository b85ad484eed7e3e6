"""Run directories: a trained model is an ensemble of members, each a checkpoint directory.

    run_dir/run.json          domain, task, stage, resolved config, members and the SHA-256 of every file
                              of the run (written last: marks completion)
    run_dir/member_<k>/       model.safetensors + meta.json of ensemble member k (seed = base seed + k)
    run_dir/calibration.json  the task's post-training calibration, shared by every member (optional)

Every file is checked against its recorded hash before a model is built, so a truncated or altered file is
reported by name instead of giving a traceback or, worse, silent wrong predictions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from core.checkpoint import META, WEIGHTS, load_meta, load_weights
from core.errors import UserError
from core.io import file_sha256, read_json

RUN_FILE = "run.json"
CALIBRATION_FILE = "calibration.json"


@dataclass
class LoadedModel:
    """One trained ensemble member, ready for inference."""

    model: torch.nn.Module
    metadata: dict[str, Any]
    path: Path
    device: torch.device


def read_run_json(path: Path) -> Any:
    """A run's JSON file, or a UserError naming it (a broken file must not give a traceback)."""
    try:
        return read_json(path)
    except FileNotFoundError:
        raise UserError(f"{path}: missing; the run directory is incomplete (retrain with `sciformer train`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); the file is damaged: retrain, or restore the run "
                        "directory from a copy") from None


def member_dirs(run_dir: Path) -> list[Path]:
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).exists():
        return [run_dir / m for m in read_run_json(run_dir / RUN_FILE)["members"]]
    if (run_dir / META).exists():  # a single checkpoint directory
        return [run_dir]
    raise UserError(f"{run_dir}: not a trained model (no {RUN_FILE} or {META}); "
                    "pass the directory written by `sciformer train -o DIR`")


def run_info(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).exists():
        return read_run_json(run_dir / RUN_FILE)
    member_dirs(run_dir)  # raises the "not a trained model" error for anything else
    meta = read_run_json(run_dir / META)
    return {"members": ["."], "domain": meta.get("domain"), "stage": meta.get("stage"), "task": meta.get("task_name")}


def run_files(run_dir: Path, members: Sequence[Path]) -> dict[str, str]:
    """{path relative to the run: sha256} of everything a prediction reads (recorded in run.json)."""
    files = {}
    for m in members:
        for name in (WEIGHTS, META):
            files[str((Path(m) / name).relative_to(run_dir))] = file_sha256(Path(m) / name)
    if (Path(run_dir) / CALIBRATION_FILE).exists():
        files[CALIBRATION_FILE] = file_sha256(Path(run_dir) / CALIBRATION_FILE)
    return files


def verify_files(run_dir: Path) -> None:
    """Check every recorded file of the run against its hash (runs written before hashes were recorded
    are accepted as they are)."""
    recorded = run_info(run_dir).get("files") or {}
    for rel, digest in recorded.items():
        path = Path(run_dir) / rel
        if not path.exists():
            raise UserError(f"{path}: missing from the trained model; retrain or restore the run directory")
        if file_sha256(path) != digest:
            raise UserError(f"{path}: changed or damaged since training (its SHA-256 differs from the one in "
                            f"{Path(run_dir) / RUN_FILE}); retrain or restore the run directory")


def check_run(run_dir: Path, domain: Any) -> dict[str, Any]:
    """The run's info, after checking it belongs to `domain`, is a final-stage run, and its files are intact."""
    info = run_info(run_dir)
    trained_for = info.get("domain")
    if trained_for and trained_for != domain.name:
        raise UserError(f"{run_dir}: this model was trained for domain {trained_for!r}, not {domain.name!r}; "
                        f"use --domain {trained_for} or another --model")
    task = domain.task(info.get("task"))
    stage = info.get("stage")
    if stage and stage != task.stages[-1]:
        raise UserError(f"{run_dir}: this is a {stage!r} run (it initializes training); pass the run directory "
                        f"of the final stage ({task.stages[-1]!r}), e.g. the -o of `sciformer train`")
    verify_files(run_dir)
    return info


def run_task(run_dir: Path, domain: Any) -> Any:
    """The task a run was trained for (checked: see `check_run`)."""
    return domain.task(check_run(run_dir, domain).get("task"))


def first_meta(run_dir: Path) -> dict[str, Any]:
    return load_meta(member_dirs(run_dir)[0])


def load_members(task: Any, run_dir: Path, device: torch.device) -> list[LoadedModel]:
    check_run(run_dir, task.domain)
    calibration_path = Path(run_dir) / CALIBRATION_FILE
    calibration = read_run_json(calibration_path) if calibration_path.exists() else None
    return load_members_from(task, member_dirs(run_dir), device, calibration)


def load_members_from(task: Any, paths: list[Path], device: torch.device,
                      calibration: dict | None = None) -> list[LoadedModel]:
    members = []
    for path in paths:
        meta = read_run_json(Path(path) / META)
        if "train_seconds" not in meta:
            raise UserError(f"{path}: training of this member did not finish; rerun `sciformer train` (it resumes)")
        model = task.build_model(meta["task"])
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
    Turn them into predictions with ``core.ensemble`` (mean and spread, probabilities)."""
    from core.train import to_device
    outs = []
    for member in members:
        parts = [member.model(to_device(collate(list(examples[i:i + batch_size])), member.device)).float().cpu().numpy()
                 for i in range(0, len(examples), batch_size)]
        outs.append(np.concatenate(parts) if parts else np.zeros(empty_shape, dtype=np.float32))
    return np.stack(outs)
