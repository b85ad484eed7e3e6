"""Multi-process training with torch DistributedDataParallel, for every task through the core trainer:
`sciformer train --nproc N` starts N local processes (gloo on CPU, nccl on GPU); under `torchrun` (several
nodes) the process group comes from torchrun's environment instead.

The global batch is the one a single process would use: every rank draws the same shuffled order, takes its
slice (rank::world) of each global batch, and weights its loss by its share of that batch, so the averaged
gradient is the single-process mean gradient (for losses that are means over examples). Rank 0 validates,
writes checkpoints and resume state, once; the others wait at the collectives. A failing worker ends the run
with its error (the others are stopped), and collectives time out after `train.ddp_timeout` seconds instead
of hanging forever.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from core.errors import UserError


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def current() -> Rank:
    if dist.is_available() and dist.is_initialized():
        return Rank(dist.get_rank(), dist.get_world_size())
    return Rank()


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(timeout_s: float) -> None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, timeout_s: float, errors: str, fn: Callable, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    init_from_env(timeout_s)
    try:
        fn(*args)
    except Exception as exc:   # noted for the launcher: a peer's "connection closed" must not hide the cause
        text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        Path(errors, f"{rank}").write_text(f"{time.time()}\t{isinstance(exc, UserError)}\t{text}")
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _root_cause(errors: Path) -> tuple[int, bool, str] | None:
    """The first-noted error that is not a peer's reaction to another worker's death."""
    noted = []
    for f in errors.iterdir():
        when, user, text = f.read_text().split("\t", 2)
        noted.append((float(when), int(f.name), user == "True", text))
    causes = [n for n in noted if "Connection closed by peer" not in n[3] and "Connection reset" not in n[3]]
    first = min(causes or noted, default=None)
    return None if first is None else (first[1], first[2], first[3].strip().splitlines()[0])


def launch(fn: Callable, nproc: int, args: tuple = (), timeout_s: float = 600) -> None:
    """Run fn(*args) in `nproc` local processes forming one process group; a failure in any of them raises
    a UserError naming the worker and its error (the other workers are stopped)."""
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {nproc}")
    with tempfile.TemporaryDirectory(prefix="sciformer-ddp-") as errors:
        try:
            torch.multiprocessing.spawn(_worker, args=(nproc, _free_port(), timeout_s, errors, fn, args),
                                        nprocs=nproc, join=True)
        except torch.multiprocessing.ProcessRaisedException as exc:
            rank, user, text = _root_cause(Path(errors)) or (exc.error_index, False, str(exc).strip().splitlines()[-1])
            if user:
                raise UserError(text) from None
            raise UserError(f"training worker {rank} of {nproc} failed: {text} (the other workers were stopped; "
                            "rerun `sciformer train`: finished members are kept, an interrupted one resumes)") from None
        except torch.multiprocessing.ProcessExitedException as exc:
            raise UserError(f"training worker {exc.error_index} of {nproc} died (exit code {exc.exit_code}; "
                            "killed, or out of memory?); the other workers were stopped; rerun `sciformer train` "
                            "to resume") from None


def broadcast_float(value: float, rank: Rank) -> float:
    """Rank 0's value on every rank (validation scores: every rank takes the same early-stopping decision)."""
    if rank.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, src=0)
    return float(t.item())


def sum_over_ranks(values: list[float], rank: Rank) -> list[float]:
    if rank.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: Any, rank: Rank) -> list[Any]:
    """Every rank's `obj` in rank order (on every rank; pickled through the process group, so only for small
    objects such as generator states)."""
    if rank.world == 1:
        return [obj]
    out: list[Any] = [None] * rank.world
    dist.all_gather_object(out, obj)
    return out


def barrier(rank: Rank) -> None:
    if rank.world > 1:
        dist.barrier()


def wrap(model: torch.nn.Module, rank: Rank, device: torch.device) -> torch.nn.Module:
    """DDP around the model on several ranks (unused parameters allowed: some tasks skip branches)."""
    if rank.world == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def local_slice(indices: list[Any], rank: Rank) -> list[Any]:
    return indices[rank.rank::rank.world]
