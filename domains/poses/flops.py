"""FLOPs of the lifter, counted by formula (one multiply-add = 2 FLOPs, matrix products only: the convention
of torch.utils.flop_counter, which the tests compare against with SDPA on its math path), and of any module
by torch's counter. Norms, softmax, rotary and activations are not counted (a few percent)."""
from __future__ import annotations

from typing import Any, Mapping

import torch


def _block(n_seq: int, length: int, d: int, d_ff: int) -> int:
    tokens = n_seq * length
    return (2 * tokens * d * 3 * d           # qkv projection
            + 2 * 2 * n_seq * length * length * d   # scores and weighted values
            + 2 * tokens * d * d             # output projection
            + 2 * 2 * tokens * d * d_ff)     # feed-forward


def lifter_flops(meta: Mapping[str, Any], frames: int, batch: int = 1) -> int:
    """FLOPs of one forward pass of `batch` windows of `frames` frames."""
    enc, m = meta["encoder"], meta["model"]
    d, d_ff, depth, j, c = int(enc["d_model"]), int(enc["d_ff"]), int(enc["n_layers"]), 17, int(meta["in_channels"])
    hot = bool(m["hot"]) and int(m["hot_keep"]) < frames
    f = frames
    c += 2 * bool(m.get("rel_inputs", False))               # pelvis-relative 2D channels
    total = 2 * batch * f * j * c * d                        # embedding
    for i in range(depth):
        total += _block(batch * f, j, d, d_ff)               # spatial: per frame, joints attend
        total += _block(batch * j, f, d, d_ff)               # temporal: per joint, frames attend
        if hot and i == int(m["hot_prune_after"]):
            total += 2 * batch * f * f * d                   # DPC-kNN pairwise frame distances
            f = int(m["hot_keep"])
    if hot:
        full, kept = batch * frames * j, batch * f * j
        total += (2 * full * d * d + 2 * kept * d * 2 * d    # TRA: q from every frame, k/v from kept frames
                  + 2 * 2 * batch * j * frames * f * d       # cross-attention scores and values
                  + 2 * full * d * d)                        # output projection
    tokens = batch * frames * j
    total += 2 * tokens * d * 3 + 2 * tokens * (d * d + d)   # coordinate head + uncertainty head
    return int(total)


def counted_flops(module: torch.nn.Module, *args) -> int:
    """FLOPs torch's FlopCounterMode counts for module(*args) (SDPA on the math path so it is counted)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module(*args)
    return int(counter.get_total_flops())
