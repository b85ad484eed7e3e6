"""The training loop shared by every domain: AdamW, warm-up + cosine, clipping, early stopping, resume."""
from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from core.checkpoint import clear_resume, load_resume, load_weights, save_resume, save_weights
from core.domain import TrainingTask
from core.errors import UserError

log = logging.getLogger("sciformer.train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        log.warning("train.device=cuda but no CUDA device is visible; using the CPU")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def configure_threads(threads: int) -> None:
    """One intra-op thread per job by default: on few cores, oversubscribed threads are 10-40x slower."""
    torch.set_num_threads(threads)


def warmup_cosine(total_steps: int, warmup_frac: float):
    warmup = max(1, int(total_steps * warmup_frac))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _batches(data, batch_size: int, collate, shuffle: bool, gen: torch.Generator | None):
    order = torch.randperm(len(data), generator=gen).tolist() if shuffle else range(len(data))
    order = list(order)
    for start in range(0, len(order), batch_size):
        yield collate([data[i] for i in order[start:start + batch_size]])


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    # anything with .to() moves (tensors, torch_geometric batches); plain values (max_seqlen, size) stay
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def batch_size_of(batch: Mapping[str, Any], out: Any) -> int:
    """Samples in a batch: the collate's `size` entry, else the output's first dimension."""
    return int(batch["size"]) if "size" in batch else int(out.shape[0])


@torch.no_grad()
def evaluate_loss(task: TrainingTask, batch_size: int, device: torch.device) -> float:
    task.model.eval()
    total, count = 0.0, 0
    for batch in _batches(task.val_data, batch_size, task.collate, False, None):
        batch = to_device(batch, device)
        out = task.model(batch)
        n = batch_size_of(batch, out)
        total += float(task.loss(out, batch)) * n
        count += n
    return total / max(count, 1)


def fit(task: TrainingTask, train_cfg: Mapping[str, Any], run_dir: Path, seed: int,
        extra_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train `task.model`; keep the best validation weights in run_dir; resume if interrupted before."""
    device = pick_device(train_cfg.get("device", "auto"))
    if device.type == "cpu":
        configure_threads(int(train_cfg.get("threads", 1)))
    seed_everything(seed)
    model = task.model.to(device)
    bs = int(train_cfg["batch_size"])
    steps_per_epoch = max(1, math.ceil(len(task.train_data) / bs))
    epochs = int(train_cfg["epochs"])
    total = steps_per_epoch * epochs
    if train_cfg.get("max_steps"):
        total = min(total, int(train_cfg["max_steps"]))
    opt = torch.optim.AdamW(model.parameters(), lr=float(train_cfg["lr"]),
                            weight_decay=float(train_cfg.get("weight_decay", 0.0)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, float(train_cfg.get("warmup_frac", 0.05))))
    amp = bool(train_cfg.get("amp", True)) and device.type == "cuda"
    clip = float(train_cfg.get("grad_clip", 0.0))
    patience = int(train_cfg.get("patience", 10))
    run_dir.mkdir(parents=True, exist_ok=True)

    progress = load_resume(run_dir, model, opt, sched) or {"epoch": 0, "step": 0, "best": None,
                                                          "best_epoch": -1, "history": []}
    if progress["epoch"]:
        log.info("resuming %s at epoch %d", run_dir, progress["epoch"])
    gen = torch.Generator().manual_seed(seed)
    for _ in range(progress["epoch"]):  # replay the shuffles of finished epochs: resumed == uninterrupted
        torch.randperm(len(task.train_data), generator=gen)
    bar = tqdm(total=total, initial=progress["step"], disable=not train_cfg.get("progress", True),
               desc=f"train {run_dir.name}", unit="step", leave=False)
    start = time.perf_counter()
    for epoch in range(progress["epoch"], epochs):
        if progress["step"] >= total:
            break
        model.train()
        running, seen = 0.0, 0
        for batch in _batches(task.train_data, bs, task.collate, True, gen):
            if progress["step"] >= total:
                break
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(batch)
            loss = task.loss(out, batch)  # outside autocast: losses are computed in float32
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            progress["step"] += 1
            n = batch_size_of(batch, out)
            running += float(loss.detach()) * n
            seen += n
            bar.update(1)
        val = evaluate_loss(task, bs, device) if len(task.val_data) else running / max(seen, 1)
        if not math.isfinite(val):
            raise UserError(f"{run_dir}: the loss became {val} in epoch {epoch} (training diverged); "
                            "lower train.lr or raise train.grad_clip's strictness (e.g. --set train.lr=1e-4)")
        progress["history"].append({"epoch": epoch, "train_loss": running / max(seen, 1), task.val_metric: val})
        bar.set_postfix(train=f"{running / max(seen, 1):.4f}", val=f"{val:.4f}")
        progress["epoch"] = epoch + 1
        if progress["best"] is None or val < progress["best"]:
            progress["best"], progress["best_epoch"] = val, epoch
            save_weights(model, run_dir, _meta(task, progress, seed, extra_meta))
        save_resume(run_dir, model, opt, sched, progress)
        if epoch - progress["best_epoch"] >= patience:
            log.info("early stop at epoch %d (best %d)", epoch, progress["best_epoch"])
            break
    bar.close()
    # final metadata (with the full history) beside the best weights; resume state is no longer needed
    best = task.model
    load_weights(best, run_dir)
    save_weights(best, run_dir, _meta(task, progress, seed, extra_meta, seconds=time.perf_counter() - start))
    clear_resume(run_dir)
    return progress


def _meta(task: TrainingTask, progress: dict, seed: int, extra: Mapping[str, Any] | None,
          seconds: float | None = None) -> dict[str, Any]:
    meta = {"task": task.metadata, "seed": seed, "best_epoch": progress["best_epoch"],
            "best_" + task.val_metric: progress["best"], "history": progress["history"]}
    if seconds is not None:
        meta["train_seconds"] = round(seconds, 2)
    meta.update(extra or {})
    return meta
