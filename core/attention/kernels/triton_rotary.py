"""Triton kernel: rotary embedding (rotate_half convention) on the packed varlen layout.

y[t, h, d] = x[t, h, d] * cos[p, d] + sign(d) * x[t, h, d'] * sin[p, d],   d' = (d + D/2) mod D,
sign(d) = -1 for d < D/2 else +1, p = t - cu_seqlens[seq(t)] (positions restart per sequence).

The backward is the transpose: dx[d] = dy[d] * cos[p, d] - sign(d) * dy[d'] * sin[p, d'], the same
kernel with BACKWARD=True, so no activation needs to be saved for it.

seq(t) is found in-kernel by a vectorized binary search over cu_seqlens (log2(B) gathers per token)
instead of materializing a [T] position tensor: one pass over x, no extra launch. With
``cu_seqlens=None`` the tables are per token (p = t), the layout the attention backends receive.
One program handles BLOCK_T tokens for all heads, so each cos/sin row is read once.

This module imports triton at import time: import it only through ``core.attention.kernels.ops`` (lazily).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from core.attention.kernels.triton_linear import interpret_mode


@triton.jit
def _rotary_kernel(X, Y, COS, SIN, CU, T, B, N_SEARCH, H, stride_xt, stride_xh, stride_yt, stride_yh,
                   stride_c, D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                   HAS_CU: tl.constexpr, BACKWARD: tl.constexpr):
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    tm = t < T
    if HAS_CU:
        # Largest b with cu[b] <= t (empty sequences repeat an offset, so "largest" skips them).
        lo = tl.zeros([BLOCK_T], dtype=tl.int32)
        hi = tl.zeros([BLOCK_T], dtype=tl.int32) + B
        for _ in range(N_SEARCH):
            mid = (lo + hi) // 2
            left = tl.load(CU + mid, mask=tm, other=0) <= t
            lo = tl.where(left, mid, lo)
            hi = tl.where(left, hi, mid)
        pos = t - tl.load(CU + lo, mask=tm, other=0)
    else:
        pos = t
    pos = pos.to(tl.int64)
    t64 = t.to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    dp = (d + D // 2) % D
    sign = tl.where(d < D // 2, -1.0, 1.0)
    m = tm[:, None] & (d < D)[None, :]
    c = tl.load(COS + pos[:, None] * stride_c + d[None, :], mask=m, other=0.0).to(tl.float32)
    if BACKWARD:
        s = -tl.load(SIN + pos[:, None] * stride_c + dp[None, :], mask=m, other=0.0).to(tl.float32)
    else:
        s = tl.load(SIN + pos[:, None] * stride_c + d[None, :], mask=m, other=0.0).to(tl.float32)
    s = s * sign[None, :]
    for h in range(H):
        xh = X + h * stride_xh + t64[:, None] * stride_xt
        x = tl.load(xh + d[None, :], mask=m, other=0.0).to(tl.float32)
        xp = tl.load(xh + dp[None, :], mask=m, other=0.0).to(tl.float32)
        y = x * c + xp * s
        tl.store(Y + h * stride_yh + t64[:, None] * stride_yt + d[None, :], y.to(Y.dtype.element_ty), mask=m)


def config(d: int, block_t: int | None = None) -> dict:
    block_d = triton.next_power_of_2(d)
    if block_t is None:
        block_t = 16 if interpret_mode() else max(1, 4096 // block_d)  # ~4k elements per head tile
    return dict(BLOCK_T=block_t, BLOCK_D=block_d, num_warps=4)


def rotary(x, cos, sin, cu_seqlens=None, backward=False, block_t=None):
    """x [T, H, D] rotated by tables cos/sin [P, D] at per-sequence positions (per-token if cu is None)."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    cos, sin = cos.contiguous(), sin.contiguous()
    total, heads, d = x.shape
    y = torch.empty(total, heads, d, device=x.device, dtype=x.dtype)
    if total == 0:
        return y
    cfg = config(d, block_t)
    if cu_seqlens is None:
        cu, batch, n_search = x, 0, 0  # dummy pointer, never read
    else:
        cu = cu_seqlens.to(torch.int32).contiguous()
        batch = cu.numel() - 1
        n_search = max(1, (batch).bit_length())  # ceil(log2(B)) + 1 halvings of [0, B]
    grid = (triton.cdiv(total, cfg["BLOCK_T"]),)
    _rotary_kernel[grid](x, y, cos, sin, cu, total, batch, n_search, heads, x.stride(0), x.stride(1),
                         y.stride(0), y.stride(1), cos.stride(0), D=d, HAS_CU=cu_seqlens is not None,
                         BACKWARD=backward, **cfg)
    return y


def compile_specs():
    """Kernel configurations the launcher produces on a GPU, for ahead-of-time compilation tests."""
    for tname in ("fp32", "fp16", "bf16"):
        for d in (16, 32, 64, 128):
            for has_cu in (True, False):
                for backward in (False, True):
                    # Tilings differ by D only; HAS_CU/BACKWARD and the dtype are sampled, not crossed.
                    if has_cu == backward or (tname != "bf16" and (d != 64 or backward)) or d == 32:
                        continue
                    cfg = dict(BLOCK_T=max(1, 4096 // d), BLOCK_D=d)
                    sig = {a: "i32" for a in _rotary_kernel.arg_names}
                    sig.update(X=f"*{tname}", Y=f"*{tname}", COS=f"*{tname}", SIN=f"*{tname}", CU="*i32")
                    for a in ("D", "BLOCK_T", "BLOCK_D", "HAS_CU", "BACKWARD"):
                        sig[a] = "constexpr"
                    yield (f"rotary_{tname}_d{d}_cu{int(has_cu)}_bwd{int(backward)}", _rotary_kernel, sig,
                           dict(D=d, HAS_CU=has_cu, BACKWARD=backward, **cfg), {"num_warps": 4})
