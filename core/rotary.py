"""Rotary position embeddings (RoFormer, Su et al. 2021) in the half-split "rotate_half" convention
used by GPT-NeoX / LLaMA: channel i is paired with channel i + dim/2 (not with its neighbour).

On the packed layout positions restart at 0 for every sequence; get them from
``core.packing.positions_from_cu_seqlens``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["rotary_cos_sin", "apply_rotary", "rotate_half"]


def rotary_cos_sin(
    positions: Tensor,
    dim: int,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Rotation tables for ``positions`` [T] -> (cos, sin), each [T, dim] in ``dtype``."""
    if dim % 2 != 0:
        raise ValueError(f"rotary embeddings need an even head dim, got head_dim={dim}")
    device = positions.device if device is None else device
    # Angles are computed in float64 and cast at the end: large positions times small frequencies
    # lose precision in float32/bf16, and float64 keeps the float64 tests exact.
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim))
    angles = positions.to(device=device, dtype=torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)  # half-split layout: same angle for i and i + dim/2
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: Tensor) -> Tensor:
    """[x1, x2] -> [-x2, x1] along the last dim (the 90-degree rotation of each channel pair)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x [T, H, Dh] by the per-token tables cos/sin [T, Dh]; returns the same shape."""
    if x.shape[-1] % 2 != 0:
        raise ValueError(f"rotary embeddings need an even head dim, got head_dim={x.shape[-1]}")
    if cos.shape != (x.shape[0], x.shape[-1]) or sin.shape != cos.shape:
        raise ValueError(
            f"cos/sin must have shape [T, Dh] = {(x.shape[0], x.shape[-1])}, got {tuple(cos.shape)}"
        )
    cos = cos.to(x.dtype).unsqueeze(1)  # broadcast over heads
    sin = sin.to(x.dtype).unsqueeze(1)
    return x * cos + rotate_half(x) * sin
