"""The training loop shared by every domain: AdamW (no decay on norms and biases), warm-up + cosine, clipping,
early stopping on a validation score (the starting weights are scored too), resume, optional loader workers."""
from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from core import distributed
from core.checkpoint import clear_resume, load_resume, load_weights, rng_state, save_resume, save_weights
from core.errors import UserError
from core.progress import Progress
from core.task import TrainingTask

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


def index_batches(n: int, batch_size: int, shuffle: bool, gen: torch.Generator | None) -> list[list[int]]:
    """The global batches of an epoch as example indices (the same on every rank: `gen` is seeded alike)."""
    order = torch.randperm(n, generator=gen).tolist() if shuffle else list(range(n))
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def _batches(data, chunks: list[list[int]], collate, workers: int = 0):
    if workers <= 0:
        for idx in chunks:
            yield collate([data[i] for i in idx])
        return
    # Worker processes build batches ahead of the training step (heavy featurization or augmentation);
    # each worker is seeded from torch's RNG, so a run is repeatable for a fixed number of workers.
    loader = torch.utils.data.DataLoader(_Indexed(data), batch_sampler=chunks, collate_fn=collate,
                                         num_workers=workers, persistent_workers=False,
                                         multiprocessing_context="spawn")
    yield from loader


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, data):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """nanoGPT's split: matrices (linear and embedding weights) decay; biases, norm scales and other vectors
    do not (decaying a LayerNorm gain toward 0 or a bias toward 0 only hurts)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def split_loss(value: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """A task's loss is a scalar, or (scalar, {component: value}) whose components are logged."""
    if isinstance(value, tuple):
        loss, parts = value
        return loss, {k: float(v.detach() if hasattr(v, "detach") else v) for k, v in parts.items()}
    return value, {}


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    # anything with .to() moves (tensors, torch_geometric batches); plain values (max_seqlen, size) stay
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def batch_size_of(batch: Mapping[str, Any], out: Any) -> int:
    """Samples in a batch: the collate's `size` entry, else the output's first dimension."""
    return int(batch["size"]) if "size" in batch else int(out.shape[0])


@torch.no_grad()
def validation_score(task: TrainingTask, batch_size: int, device: torch.device, workers: int = 0) -> float:
    """What early stopping minimizes: the task's `val_score` if it has one, else the mean validation loss."""
    task.model.eval()
    if task.val_score is not None:
        return float(task.val_score(task.model))
    total, count = 0.0, 0
    chunks = index_batches(len(task.val_data), batch_size, False, None)
    for batch in _batches(task.val_data, chunks, task.val_collate or task.collate, workers):
        batch = to_device(batch, device)
        out = task.model(batch)
        n = batch_size_of(batch, out)
        total += float(split_loss(task.loss(out, batch))[0]) * n
        count += n
    return total / max(count, 1)


def fit(task: TrainingTask, train_cfg: Mapping[str, Any], run_dir: Path, seed: int,
        extra_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train `task.model`; keep the best validation weights in run_dir; resume if interrupted before.

    The starting weights (a closed-form initialization, a pretrained encoder) are scored on validation before
    the first epoch and kept when no epoch beats them: training can only improve on where it started. Inside a
    process group (`core.distributed`) every rank trains on its slice of each global batch; rank 0 validates and
    writes."""
    rank = distributed.current()
    device = pick_device(train_cfg.get("device", "auto"))
    if device.type == "cuda" and rank.world > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cpu":
        configure_threads(int(train_cfg.get("threads", 1)))
    seed_everything(seed)
    model = task.model.to(device)
    bs = int(train_cfg["batch_size"])
    if bs < rank.world:
        raise UserError(f"train.batch_size={bs} is smaller than the {rank.world} processes; every process needs "
                        "part of each batch (raise train.batch_size or lower --nproc)")
    workers = int(train_cfg.get("workers", 0))
    steps_per_epoch = max(1, math.ceil(len(task.train_data) / bs))
    epochs = int(train_cfg["epochs"])
    total = steps_per_epoch * epochs
    if train_cfg.get("max_steps"):
        total = min(total, int(train_cfg["max_steps"]))
    opt = torch.optim.AdamW(param_groups(model, float(train_cfg.get("weight_decay", 0.0))),
                            lr=float(train_cfg["lr"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, float(train_cfg.get("warmup_frac", 0.05))))
    amp = bool(train_cfg.get("amp", True)) and device.type == "cuda"
    clip = float(train_cfg.get("grad_clip", 0.0))
    patience = int(train_cfg.get("patience", 10))
    run_dir.mkdir(parents=True, exist_ok=True)
    has_val = len(task.val_data) > 0 or task.val_score is not None

    def validate() -> float:  # rank 0 scores, every rank gets the score (the same early-stopping decision)
        score = validation_score(task, bs, device, workers) if rank.main else 0.0
        return distributed.broadcast_float(score, rank)

    resumed = load_resume(run_dir, model, opt, sched, rank.rank)
    progress, own_rng = resumed if resumed is not None else (None, False)
    distributed.barrier(rank)   # every rank has read the resume state before rank 0 writes anything
    if progress is None:
        progress = {"epoch": 0, "step": 0, "best": None, "best_epoch": -1, "history": []}
        if has_val:  # epoch -1 = the starting weights
            start_score = validate()
            progress["history"].append({"epoch": -1, task.val_metric: start_score})
            if math.isfinite(start_score):
                progress["best"] = start_score
                if rank.main:
                    save_weights(model, run_dir, _meta(task, progress, seed, extra_meta))
    else:
        log.info("resuming %s at epoch %d", run_dir, progress["epoch"])
    gen = torch.Generator().manual_seed(seed)
    for _ in range(progress["epoch"]):  # replay the shuffles of finished epochs: resumed == uninterrupted
        torch.randperm(len(task.train_data), generator=gen)
    if rank.world > 1 and not own_rng:  # independent dropout masks per rank (the shuffle generator stays shared);
        torch.manual_seed(seed + 7919 * rank.rank)   # a resumed rank continues its own saved generators instead
    trained = distributed.wrap(model, rank, device)
    shown = train_cfg.get("progress", True)     # True, False, or "lines" (a worker of `train -j`)
    bar = Progress(total, f"train {run_dir.name}", "step", initial=progress["step"],
                   enabled=bool(shown) and rank.main, lines_only=shown == "lines")
    start = time.perf_counter()
    for epoch in range(progress["epoch"], epochs):
        if progress["step"] >= total:
            break
        model.train()
        running, seen, parts_sum = 0.0, 0, {}
        chunks = index_batches(len(task.train_data), bs, True, gen)
        local = [distributed.local_slice(c, rank) for c in chunks]
        for idx, batch in zip(chunks, _batches(task.train_data, local, task.collate, workers)):
            if progress["step"] >= total:
                break
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = trained(batch)
            loss, parts = split_loss(task.loss(out, batch))  # outside autocast: losses are computed in float32
            share = len(distributed.local_slice(idx, rank)) * rank.world / len(idx)
            opt.zero_grad(set_to_none=True)
            (loss * share if rank.world > 1 else loss).backward()   # DDP averages: mean over the global batch
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            progress["step"] += 1
            n = batch_size_of(batch, out)
            running += float(loss.detach()) * n
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v * n
            seen += n
            bar.update(1)
        running, seen = distributed.sum_over_ranks([running, seen], rank)   # the global batch's mean
        train_loss = running / max(seen, 1)
        val = validate() if has_val else train_loss
        if not math.isfinite(val):
            raise UserError(f"{run_dir}: the loss became {val} in epoch {epoch} (training diverged); "
                            "lower train.lr or raise train.grad_clip's strictness (e.g. --set train.lr=1e-4)")
        progress["history"].append({"epoch": epoch, "train_loss": train_loss, task.val_metric: val,
                                    **{f"train_{k}": v / max(seen, 1) for k, v in parts_sum.items()}})
        bar.set_postfix(epoch=epoch, train=f"{train_loss:.4f}", val=f"{val:.4f}")
        progress["epoch"] = epoch + 1
        improved = progress["best"] is None or val < progress["best"]
        if improved:
            progress["best"], progress["best_epoch"] = val, epoch
        rng_states = distributed.gather_objects(rng_state(), rank)   # every rank's generators, for an exact resume
        if rank.main:
            if improved:
                save_weights(model, run_dir, _meta(task, progress, seed, extra_meta))
            save_resume(run_dir, model, opt, sched, progress, rng_states)
        if epoch - progress["best_epoch"] >= patience:
            log.info("early stop at epoch %d (best %d)", epoch, progress["best_epoch"])
            break
    bar.close()
    if progress["best_epoch"] == -1 and progress["best"] is not None:
        log.info("%s: no epoch beat the starting weights on validation; keeping them", run_dir)
    distributed.barrier(rank)
    if rank.main:  # final metadata (with the full history) beside the best weights; resume state is done
        best = task.model
        if (run_dir / "model.safetensors").exists():
            load_weights(best, run_dir)
        save_weights(best, run_dir, _meta(task, progress, seed, extra_meta, seconds=time.perf_counter() - start))
        clear_resume(run_dir)
    distributed.barrier(rank)
    return progress


def _meta(task: TrainingTask, progress: dict, seed: int, extra: Mapping[str, Any] | None,
          seconds: float | None = None) -> dict[str, Any]:
    meta = {"task": task.metadata, "seed": seed, "best_epoch": progress["best_epoch"],
            "best_" + task.val_metric: progress["best"], "history": progress["history"]}
    if seconds is not None:
        meta["train_seconds"] = round(seconds, 2)
    meta.update(extra or {})
    return meta
