"""Variable-length ("packed") sequence layout shared by every model in the project.

A batch of B sequences with lengths l_0..l_{B-1} is stored as one tensor of T = sum(l_b) tokens,
``packed[T, ...]``, plus ``cu_seqlens`` (int32, shape [B+1], ``cu_seqlens[b]`` is where sequence b
starts, ``cu_seqlens[B] == T``) and ``max_seqlen`` (a Python int). This is the layout used by the
FlashAttention varlen kernels, so GPU kernels can consume it directly and no compute is spent on padding.
Empty sequences (length 0) are allowed: they simply repeat an offset in ``cu_seqlens``.
"""

from __future__ import annotations

from itertools import chain

import torch
from torch import Tensor

__all__ = [
    "lengths_to_cu_seqlens",
    "pack",
    "unpack",
    "positions_from_cu_seqlens",
    "segment_ids",
    "segment_mean",
    "pack_token_lists",
    "seqlens_from_cu_seqlens",
    "uniform_cu_seqlens",
]


def lengths_to_cu_seqlens(lengths: Tensor) -> Tensor:
    """Per-sequence lengths [B] -> cumulative offsets [B+1] (int32, starting with 0)."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D, got shape {tuple(lengths.shape)}")
    if lengths.numel() and bool((lengths < 0).any()):
        raise ValueError("lengths must be non-negative")
    cu = torch.zeros(lengths.numel() + 1, dtype=torch.int32, device=lengths.device)
    # cumsum in int64 first so huge batches cannot overflow silently before the cast.
    cu[1:] = torch.cumsum(lengths.to(torch.int64), dim=0).to(torch.int32)
    return cu


def uniform_cu_seqlens(batch: int, length: int, device: torch.device | str | None = None) -> Tensor:
    """Offsets [B+1] of B sequences of the same length (variates, time-frequency rows, patch grids): no
    padding and, in SDPA, the free-reshape path of equal lengths."""
    return torch.arange(0, (batch + 1) * length, length, dtype=torch.int32, device=device)


def seqlens_from_cu_seqlens(cu_seqlens: Tensor) -> Tensor:
    """Inverse of :func:`lengths_to_cu_seqlens`: offsets [B+1] -> lengths [B] (int64)."""
    cu = cu_seqlens.to(torch.int64)
    return cu[1:] - cu[:-1]


def pack(padded: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, int]:
    """Padded [B, L, *] + mask [B, L] (True = real token) -> (packed [T, *], cu_seqlens, max_seqlen).

    Boolean indexing keeps row-major order, so tokens of sequence b stay contiguous and in their
    original order even if the real tokens are not a left-aligned prefix of the row.
    """
    if mask.shape != padded.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match padded {tuple(padded.shape[:2])}")
    mask = mask.to(torch.bool)
    lengths = mask.sum(dim=1)
    packed = padded[mask]
    max_seqlen = int(lengths.max().item()) if lengths.numel() else 0
    return packed, lengths_to_cu_seqlens(lengths), max_seqlen


def segment_ids(cu_seqlens: Tensor, total: int) -> Tensor:
    """Sequence index of every packed token: LongTensor[T] (e.g. [0,0,0,2,2] for lengths [3,0,2])."""
    lengths = seqlens_from_cu_seqlens(cu_seqlens)
    batch = torch.arange(lengths.numel(), device=cu_seqlens.device)
    # output_size avoids a device->host sync on GPU.
    return torch.repeat_interleave(batch, lengths, output_size=total)


def positions_from_cu_seqlens(cu_seqlens: Tensor, total: int) -> Tensor:
    """Position of every token inside its own sequence: LongTensor[T], restarting at 0 per sequence."""
    seg = segment_ids(cu_seqlens, total)
    starts = cu_seqlens.to(torch.int64)[seg]
    return torch.arange(total, device=cu_seqlens.device) - starts


def unpack(packed: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> tuple[Tensor, Tensor]:
    """Packed [T, *] -> (padded [B, max_seqlen, *] zero-filled, mask [B, max_seqlen]).

    Implemented as a single differentiable scatter (index_put), so gradients flow back to ``packed``.
    """
    total = packed.shape[0]
    batch = cu_seqlens.numel() - 1
    seg = segment_ids(cu_seqlens, total)
    pos = positions_from_cu_seqlens(cu_seqlens, total)
    padded = packed.new_zeros((batch, max_seqlen, *packed.shape[1:]))
    padded = padded.index_put((seg, pos), packed)
    lengths = seqlens_from_cu_seqlens(cu_seqlens)
    mask = torch.arange(max_seqlen, device=packed.device)[None, :] < lengths[:, None]
    return padded, mask


def segment_mean(x: Tensor, cu_seqlens: Tensor) -> Tensor:
    """Mean over the tokens of each sequence: x [T, D] -> [B, D]. Empty sequences give zeros."""
    batch = cu_seqlens.numel() - 1
    seg = segment_ids(cu_seqlens, x.shape[0])
    sums = x.new_zeros((batch, *x.shape[1:])).index_add(0, seg, x)
    # clamp(min=1) turns 0/0 into 0/1 = 0 for empty sequences instead of NaN.
    counts = seqlens_from_cu_seqlens(cu_seqlens).clamp(min=1).to(x.dtype)
    return sums / counts.view(-1, *([1] * (x.dim() - 1)))


def pack_token_lists(
    token_lists: list[list[int]], device: torch.device | str | None = None
) -> tuple[Tensor, Tensor, int]:
    """list of token-id lists -> (ids LongTensor[T], cu_seqlens, max_seqlen)."""
    lengths = torch.tensor([len(t) for t in token_lists], dtype=torch.int64, device=device)
    ids = torch.tensor(list(chain.from_iterable(token_lists)), dtype=torch.int64, device=device)
    max_seqlen = int(lengths.max().item()) if lengths.numel() else 0
    return ids, lengths_to_cu_seqlens(lengths), max_seqlen
