"""Custom ops (namespace ``sciformer``) for the attention kernels, with fake impls and autograd.

Each op's CPU implementation is a PyTorch reference; on CUDA it runs the Triton kernel when triton
imports (else the same reference). Being ``torch.library.custom_op``s, they work with torch.compile
(fake impls give shapes without running anything), ``opcheck`` and ``gradcheck``, and the model code
has one call site per op whatever the device. Backwards are custom ops too, so a compiled graph
treats them as opaque calls.

    linear_attention_rotary(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None)  # attention backend fn
    rotary_packed(x, cos, sin, cu_seqlens=None)                                     # fused rotary
    varlen_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None)          # attention backend fn
    register_kernel_backends()  # adds "linear_fused", "linear_op", "varlen" to the attention registry

Triton is imported lazily (first CUDA call), so importing this module never needs triton and
TRITON_INTERPRET can still be set before triton's first import. Setting SCIFORMER_TRITON_CPU=1
together with TRITON_INTERPRET=1 routes CPU tensors through the Triton kernels (interpreter tests).

No ``from __future__ import annotations`` here: custom_op infers its schema from real annotations.
"""
import importlib.util
import math
import os
from typing import Optional

import torch
from torch import Tensor

from core.attention.linear import LINEAR_EPS, feature_map, feature_map_grad, gather_matvec, segment_outer
from core.attention.registry import ANY_DEVICE, AttentionBackend, register_attention, rotate
from core.attention.softmax import sdpa_attention
from core.packing import positions_from_cu_seqlens, segment_ids, seqlens_from_cu_seqlens, unpack
from core.rotary import rotate_half

__all__ = [
    "linear_attention_rotary",
    "rotary_packed",
    "varlen_attention",
    "register_kernel_backends",
    "triton_available",
]


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _use_triton(t: Tensor) -> bool:
    # float64 stays on the reference: the kernels keep fp32 state and the tests want exact float64.
    if t.dtype not in (torch.float16, torch.bfloat16, torch.float32) or not triton_available():
        return False
    if t.is_cuda:
        return True
    return os.environ.get("SCIFORMER_TRITON_CPU") == "1" and os.environ.get("TRITON_INTERPRET") == "1"


def _state_dtype(t: Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


# --------------------------------------------------------------------------- linear attention, references


def linear_fwd_reference(q, k, v, cu_seqlens, cos=None, sin=None):
    """O(T) reference of the fused kernel: (out, KV [B,H,D,Dv], S [B,H,D]); states in fp32 for half inputs."""
    sd = _state_dtype(q)
    q32, k32, v32 = q.to(sd), k.to(sd), v.to(sd)
    cos32, sin32 = (None, None) if cos is None else (cos.to(sd), sin.to(sd))
    batch, total = cu_seqlens.numel() - 1, q.shape[0]
    seg = segment_ids(cu_seqlens, total)
    fq, fk = feature_map(q32), feature_map(k32)
    rq, rk = rotate(fq, cos32, sin32), rotate(fk, cos32, sin32)
    kv = segment_outer(rk, v32, seg, batch)
    s = fk.new_zeros(batch, fk.shape[1], fk.shape[2]).index_add(0, seg, fk)
    z = (fq * s[seg]).sum(-1, keepdim=True) + LINEAR_EPS
    out = gather_matvec(rq, kv, seg) / z
    return out.to(v.dtype), kv, s


def linear_bwd_reference(dout, q, k, v, cu_seqlens, cos, sin, out, kv, s, rotary_grad=False):
    """Explicit gradient formulas (the ones the Triton backward implements), O(T).

    Returns (dq, dk, dv, dcos, dsin); dcos/dsin are [0]-sized unless ``rotary_grad``.
    """
    sd = kv.dtype
    q32, k32, v32, do32, o32 = (t.to(sd) for t in (q, k, v, dout, out))
    cos32, sin32 = (None, None) if cos is None else (cos.to(sd), sin.to(sd))
    batch, total = cu_seqlens.numel() - 1, q.shape[0]
    seg = segment_ids(cu_seqlens, total)
    fq, fk = feature_map(q32), feature_map(k32)
    rq, rk = rotate(fq, cos32, sin32), rotate(fk, cos32, sin32)
    z = (fq * s[seg]).sum(-1, keepdim=True) + LINEAR_EPS
    g = do32 / z
    dz = -(g * o32).sum(-1, keepdim=True)
    drq = gather_matvec(g, kv, seg, transpose=True)  # KV g
    dkv = segment_outer(rq, g, seg, batch)
    ds = fk.new_zeros(s.shape).index_add(0, seg, dz * fq)
    drk = gather_matvec(v32, dkv, seg, transpose=True)  # dKV v
    dv = gather_matvec(rk, dkv, seg)  # dKV^T rk
    # R^T y = y * cos - rotate_half(y * sin): rotate_half is antisymmetric.
    unrot = (lambda y: y) if cos is None else (lambda y: y * cos32[:, None] - rotate_half(y * sin32[:, None]))
    dq = (unrot(drq) + dz * s[seg]) * feature_map_grad(q32)
    dk = (unrot(drk) + ds[seg]) * feature_map_grad(k32)
    if rotary_grad and cos is not None:
        dcos = (drq * fq + drk * fk).sum(1).to(cos.dtype)
        dsin = (drq * rotate_half(fq) + drk * rotate_half(fk)).sum(1).to(sin.dtype)
    else:
        dcos, dsin = q.new_zeros(0), q.new_zeros(0)  # distinct: custom-op outputs may not alias
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dcos, dsin


# --------------------------------------------------------------------------- linear attention, ops


@torch.library.custom_op("sciformer::linear_rotary_fwd", mutates_args=())
def linear_rotary_fwd(
    q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, cos: Optional[Tensor], sin: Optional[Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    if _use_triton(q):
        from core.attention.kernels import triton_linear

        return triton_linear.linear_fwd(q, k, v, cu_seqlens, cos, sin)
    return linear_fwd_reference(q, k, v, cu_seqlens, cos, sin)


@linear_rotary_fwd.register_fake
def _(q, k, v, cu_seqlens, cos, sin):
    batch, heads, sd = cu_seqlens.shape[0] - 1, q.shape[1], _state_dtype(q)
    return (v.new_empty(q.shape[0], heads, v.shape[-1]),
            q.new_empty(batch, heads, q.shape[-1], v.shape[-1], dtype=sd),
            q.new_empty(batch, heads, q.shape[-1], dtype=sd))


@torch.library.custom_op("sciformer::linear_rotary_bwd", mutates_args=())
def linear_rotary_bwd(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, cos: Optional[Tensor],
    sin: Optional[Tensor], out: Tensor, kv: Tensor, s: Tensor, rotary_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    if _use_triton(q) and not rotary_grad:
        from core.attention.kernels import triton_linear

        dq, dk, dv = triton_linear.linear_bwd(dout, q, k, v, cu_seqlens, cos, sin, out, kv, s)
        return dq, dk, dv, q.new_zeros(0), q.new_zeros(0)
    # Gradients for the rotary tables are rare (tables come from positions): the reference has them.
    return linear_bwd_reference(dout, q, k, v, cu_seqlens, cos, sin, out, kv, s, rotary_grad)


@linear_rotary_bwd.register_fake
def _(dout, q, k, v, cu_seqlens, cos, sin, out, kv, s, rotary_grad):
    want = rotary_grad and cos is not None
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
            torch.empty_like(cos) if want else q.new_empty(0), torch.empty_like(sin) if want else q.new_empty(0))


def _linear_setup(ctx, inputs, output):
    q, k, v, cu, cos, sin = inputs
    out, kv, s = output
    ctx.save_for_backward(q, k, v, cu, cos, sin, out, kv, s)
    ctx.mark_non_differentiable(kv, s)  # auxiliary state saved for the backward, not a model output


def _linear_backward(ctx, dout, _dkv, _ds):
    q, k, v, cu, cos, sin, out, kv, s = ctx.saved_tensors
    rotary_grad = cos is not None and (ctx.needs_input_grad[4] or ctx.needs_input_grad[5])
    dq, dk, dv, dcos, dsin = linear_rotary_bwd(dout, q, k, v, cu, cos, sin, out, kv, s, rotary_grad)
    return dq, dk, dv, None, (dcos if rotary_grad else None), (dsin if rotary_grad else None)


linear_rotary_fwd.register_autograd(_linear_backward, setup_context=_linear_setup)


def linear_attention_rotary(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None) -> Tensor:
    """Attention backend: same semantics as core.attention's ``linear`` (RoFormer eq. 19)."""
    return linear_rotary_fwd(q, k, v, cu_seqlens, cos, sin)[0]


# --------------------------------------------------------------------------- rotary


def rotary_reference(x, cos, sin, cu_seqlens=None, backward=False):
    """Tables cos/sin [P, D] at positions restarting per sequence (per token if cu_seqlens is None)."""
    if cu_seqlens is not None:
        pos = positions_from_cu_seqlens(cu_seqlens, x.shape[0])
        cos, sin = cos[pos], sin[pos]
    cos, sin = cos.to(x.dtype)[:, None], sin.to(x.dtype)[:, None]
    if backward:  # transpose of the rotation
        return x * cos - rotate_half(x * sin)
    return x * cos + rotate_half(x) * sin


def _rotary_impl(x, cos, sin, cu_seqlens, backward):
    if _use_triton(x):
        from core.attention.kernels import triton_rotary

        return triton_rotary.rotary(x, cos, sin, cu_seqlens, backward)
    return rotary_reference(x, cos, sin, cu_seqlens, backward)


@torch.library.custom_op("sciformer::rotary_packed", mutates_args=())
def _rotary_op(x: Tensor, cos: Tensor, sin: Tensor, cu_seqlens: Optional[Tensor], backward: bool) -> Tensor:
    return _rotary_impl(x, cos, sin, cu_seqlens, backward)


@_rotary_op.register_fake
def _(x, cos, sin, cu_seqlens, backward):
    return torch.empty_like(x)


def _rotary_setup(ctx, inputs, output):
    x, cos, sin, cu, backward = inputs
    ctx.backward = backward
    ctx.save_for_backward(x, cos, sin, cu)


def _rotary_backward(ctx, dy):
    x, cos, sin, cu = ctx.saved_tensors
    dx = _rotary_op(dy, cos, sin, cu, not ctx.backward)  # the transpose is the same kernel
    dcos = dsin = None
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:  # plain torch ops: traceable, rarely needed
        pos = positions_from_cu_seqlens(cu, x.shape[0]) if cu is not None else torch.arange(x.shape[0], device=x.device)
        # forward y = x cos + rot(x) sin;  transpose y = x cos - rot(x sin), whose d/d sin is rot(dy) x.
        y_sin = rotate_half(dy) * x if ctx.backward else dy * rotate_half(x)
        dcos = cos.new_zeros(cos.shape).index_add(0, pos, (dy * x).sum(1).to(cos.dtype))
        dsin = sin.new_zeros(sin.shape).index_add(0, pos, y_sin.sum(1).to(sin.dtype))
    return dx, dcos, dsin, None, None


_rotary_op.register_autograd(_rotary_backward, setup_context=_rotary_setup)


def rotary_packed(x: Tensor, cos: Tensor, sin: Tensor, cu_seqlens: Optional[Tensor] = None) -> Tensor:
    """Rotate x [T, H, D] by tables cos/sin [P, D]; row = position in its sequence (or token if cu is None)."""
    return _rotary_op(x, cos, sin, cu_seqlens, False)


# --------------------------------------------------------------------------- varlen softmax attention


@torch.library.custom_op("sciformer::varlen_attention", mutates_args=())
def _varlen_op(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
    # The packed reference: torch SDPA on the padded or block-diagonal layout (core.attention).
    return sdpa_attention(q, k, v, cu_seqlens, max_seqlen)


@_varlen_op.register_fake
def _(q, k, v, cu_seqlens, max_seqlen):
    return torch.empty_like(q)


def varlen_bwd_reference(dout, q, k, v, cu_seqlens, max_seqlen):
    """Explicit softmax-attention gradients on the zero-padded layout (short sequences: B*L^2 scores)."""
    if q.shape[0] == 0:
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    scale = 1.0 / math.sqrt(q.shape[-1])
    (qp, mask), (kp, _), (vp, _), (dop, _) = (unpack(t, cu_seqlens, max_seqlen) for t in (q, k, v, dout))
    qp, kp, vp, dop = (t.transpose(1, 2) for t in (qp, kp, vp, dop))  # [B, H, L, D]
    # Padding keys are masked; an empty sequence keeps its (discarded) keys so no row is all -inf.
    empty = seqlens_from_cu_seqlens(cu_seqlens) == 0
    keys = (mask | empty[:, None])[:, None, None, :]
    p = torch.softmax((qp @ kp.transpose(-1, -2) * scale).masked_fill(~keys, float("-inf")), dim=-1)
    dv = p.transpose(-1, -2) @ dop
    dp = dop @ vp.transpose(-1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdim=True))
    dq, dk = (ds @ kp) * scale, (ds.transpose(-1, -2) @ qp) * scale
    return tuple(t.transpose(1, 2)[mask] for t in (dq, dk, dv))


@torch.library.custom_op("sciformer::varlen_attention_bwd", mutates_args=())
def _varlen_bwd_op(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int
) -> tuple[Tensor, Tensor, Tensor]:
    # Recomputes the probabilities (no softmax statistics are saved by the forward).
    return varlen_bwd_reference(dout, q, k, v, cu_seqlens, max_seqlen)


@_varlen_bwd_op.register_fake
def _(dout, q, k, v, cu_seqlens, max_seqlen):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _varlen_setup(ctx, inputs, output):
    q, k, v, cu, max_seqlen = inputs
    ctx.max_seqlen = max_seqlen
    ctx.save_for_backward(q, k, v, cu)


def _varlen_backward(ctx, dout):
    q, k, v, cu = ctx.saved_tensors
    return (*_varlen_bwd_op(dout, q, k, v, cu, ctx.max_seqlen), None, None)


_varlen_op.register_autograd(_varlen_backward, setup_context=_varlen_setup)


def _flash_varlen_ok(q: Tensor) -> bool:
    return (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] % 8 == 0
            and q.shape[-1] <= 256 and q.shape[0] > 0)


def varlen_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None) -> Tensor:
    """Attention backend: packed softmax attention; flash varlen on CUDA, the packed reference elsewhere."""
    if cos is not None:
        q, k = rotary_packed(q, cos, sin), rotary_packed(k, cos, sin)
    if _flash_varlen_ok(q):
        try:
            from torch.nn.attention.varlen import varlen_attn  # itself a custom op with autograd
        except ImportError:
            varlen_attn = None
        if varlen_attn is not None:
            cu = cu_seqlens.to(torch.int32)
            return varlen_attn(q, k, v, cu, cu, max_seqlen, max_seqlen, scale=1.0 / math.sqrt(q.shape[-1]))
    return _varlen_op(q, k, v, cu_seqlens, max_seqlen)


# --------------------------------------------------------------------------- registration


def register_kernel_backends() -> None:
    """Add the kernel backends to core.attention's registry (idempotent)."""
    register_attention(AttentionBackend(
        "linear_fused", linear_attention_rotary, "linear", ("cuda",), ("triton",), True,
        "Triton fused linear attention + rotary over cu_seqlens chunks (forward and backward), O(T)",
        # off CUDA the same math in vectorized PyTorch, not the O(L^2) test oracle
        fallback="linear"))
    register_attention(AttentionBackend(
        "linear_op", linear_attention_rotary, "linear", (ANY_DEVICE,), (), True,
        "the linear_fused custom op on any device (PyTorch reference off CUDA / without triton)"))
    register_attention(AttentionBackend(
        "varlen", varlen_attention, "softmax", (ANY_DEVICE,), (), True,
        "packed softmax attention custom op: flash varlen on CUDA (fp16/bf16), packed SDPA reference elsewhere"))
