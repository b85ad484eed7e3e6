"""Checkpoints: safetensors weights + JSON metadata. Loading never executes code (no pickle).

A run directory holds `model.safetensors` (best weights), `meta.json` (model metadata, resolved config,
versions, data hashes, history) and, while training, `resume.safetensors` + `resume.json` (last epoch's
model, optimizer and RNG state) so an interrupted run continues where it stopped.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from core.errors import UserError
from core.io import atomic_path, read_json, write_json

WEIGHTS = "model.safetensors"
META = "meta.json"


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    write_json(path / META, metadata)


def load_meta(path: Path) -> dict[str, Any]:
    meta = path / META
    if not meta.exists():
        raise UserError(f"{path}: no {META} here; --model must be a run directory written by `sciformer train`")
    return read_json(meta)


def load_weights(model: torch.nn.Module, path: Path, strict: bool = True) -> list[str]:
    """Load weights into `model`; returns the keys that were missing (non-strict init from pretraining)."""
    file = path / WEIGHTS
    if not file.exists():
        raise UserError(f"{path}: no {WEIGHTS}; was training interrupted? rerun `sciformer train` (it resumes)")
    state = load_file(str(file))
    if strict:
        model.load_state_dict(state, strict=True)
        return []
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    result = model.load_state_dict(usable, strict=False)
    return list(result.missing_keys)


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars["state"].setdefault(str(pid), {})[name] = value
    return tensors, scalars


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's generators as (tensors, JSON scalars): torch's (dropout), CUDA's (dropout on GPU), and
    numpy's and Python's global ones (data augmentation draws from them: poses' flips), so a resumed run
    continues exactly as an uninterrupted one."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, py_state, py_gauss = random.getstate()
    return tensors, {"numpy": [kind, int(pos), int(has_gauss), float(gauss)],
                     "python": [version, list(py_state), py_gauss]}


def _set_rng_state(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    if scalars and "numpy" in tensors:       # (resume files written before these were saved lack them)
        kind, pos, has_gauss, gauss = scalars["numpy"]
        np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, py_state, py_gauss = scalars["python"]
        random.setstate((version, tuple(py_state), py_gauss))


def save_resume(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, progress: dict,
                rng_states: list[tuple[dict, dict]] | None = None) -> None:
    """`rng_states`: every rank's `rng_state()` (rank order) on a multi-process run; default: this process's."""
    tensors, opt_scalars = _flatten_optimizer(opt)
    tensors.update({f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    rng_states = rng_states or [rng_state()]
    for r, (rng_tensors, _) in enumerate(rng_states):
        tensors.update({f"rng.{r}.{k}": v.cpu().contiguous() for k, v in rng_tensors.items()})
    with atomic_path(path / "resume.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_json(path / "resume.json", {"progress": progress, "optimizer": opt_scalars,
                                      "scheduler": sched.state_dict(),
                                      "rng_ranks": [scalars for _, scalars in rng_states]})


def load_resume(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched,
                rank: int = 0) -> tuple[dict, bool] | None:
    """(progress, whether this rank's own generators were restored), or None when there is nothing to resume. A
    run resumed with more processes than it saved, or a file from before per-rank states, restores rank 0's."""
    if not (path / "resume.safetensors").exists() or not (path / "resume.json").exists():
        return None
    tensors = load_file(str(path / "resume.safetensors"))
    info = read_json(path / "resume.json")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, scalars in info["optimizer"]["state"].items():
        state.setdefault(int(pid), {}).update(scalars)
    opt.load_state_dict({"state": state, "param_groups": info["optimizer"]["param_groups"]})
    sched.load_state_dict(info["scheduler"])
    ranks = info.get("rng_ranks")
    if ranks is not None:
        own = rank < len(ranks)
        r = rank if own else 0
        _set_rng_state({k[len(f"rng.{r}."):]: v for k, v in tensors.items() if k.startswith(f"rng.{r}.")}, ranks[r])
        return info["progress"], own
    # the single-state layout of earlier versions
    _set_rng_state({k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}, info.get("rng") or {})
    return info["progress"], False


def clear_resume(path: Path) -> None:
    for name in ("resume.safetensors", "resume.json"):
        (path / name).unlink(missing_ok=True)
