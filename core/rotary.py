"""Rotary position embeddings (RoFormer, Su et al. 2021) in the half-split "rotate_half" convention
used by GPT-NeoX / LLaMA: channel i is paired with channel i + dim/2 (not with its neighbour).

On the packed layout positions restart at 0 for every sequence; get them from
``core.packing.positions_from_cu_seqlens``.

Positions may have several axes ([T, A]: frame x joint, row x column of a patch grid, x/y/z of a point).
Axial rotary (as in RoPE-2D of DUSt3R/CroCo, RoPE-Mixed's axial variant): the Dh/2 rotation frequencies are
split into A contiguous groups, group a rotates by axis a's position with its own geometric frequency
ladder. The tables keep the [T, Dh] shape, so every attention backend and kernel takes them unchanged, and
the score of two tokens depends only on their per-axis offsets.
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
    """Rotation tables for ``positions`` [T] or [T, A] -> (cos, sin), each [T, dim] in ``dtype``.

    With A axes, axis a gets ``dim // 2 // A`` frequencies (the first ``dim // 2 % A`` axes one more);
    positions may be fractional (e.g. point coordinates in voxel units)."""
    if dim % 2 != 0:
        raise ValueError(f"rotary embeddings need an even head dim, got head_dim={dim}")
    device = positions.device if device is None else device
    pos = positions.to(device=device, dtype=torch.float64)
    pos = pos[:, None] if pos.dim() == 1 else pos
    if pos.dim() != 2 or not 1 <= pos.shape[1] <= dim // 2:
        raise ValueError(f"positions must be [T] or [T, A] with 1 <= A <= head_dim/2 = {dim // 2}, "
                         f"got shape {tuple(positions.shape)}")
    # Angles are computed in float64 and cast at the end: large positions times small frequencies
    # lose precision in float32/bf16, and float64 keeps the float64 tests exact.
    groups = torch.arange(dim // 2, device=device).tensor_split(pos.shape[1])
    angles = torch.cat([pos[:, a:a + 1] * _inv_freq(len(g), base, device)[None, :] for a, g in enumerate(groups)], -1)
    angles = torch.cat([angles, angles], dim=-1)  # half-split layout: same angle for i and i + dim/2
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _inv_freq(n: int, base: float, device) -> Tensor:
    """The usual ladder base^(-2i/d) for a group of n frequencies (d = 2n); n = dim/2 gives 1-D rotary."""
    return 1.0 / (base ** (torch.arange(0, 2 * n, 2, dtype=torch.float64, device=device) / (2 * n)))


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
