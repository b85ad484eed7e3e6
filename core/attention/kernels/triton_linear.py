"""Triton kernels: bidirectional linear attention with rotary embeddings on the packed varlen layout.

Math (per sequence s and head h; phi(x) = elu(x) + 1, R = rotary, rotate_half convention):

    fq, fk = phi(q), phi(k);  rq, rk = R fq, R fk
    KV = sum_j rk_j v_j^T  [D, Dv],   S = sum_j fk_j  [D]          (the per-sequence "state")
    z_i = fq_i . S + eps,   out_i = (rq_i^T KV) / z_i

Because attention is bidirectional, the state of a sequence is one sum over all of its tokens, so the
work is split into chunks of BLOCK_T tokens that never cross a sequence boundary (no padding work):

    forward   1) _state_kernel : every chunk adds its rk^T v and sum(fk) to KV/S   (fp32 atomics)
              2) _out_kernel   : every chunk computes rq @ KV / z
    backward  3) _bwd_q_kernel : dq from (KV, S) saved by the forward; adds rq^T g to dKV and
                                 sum(dz * fq) to dS                                (fp32 atomics)
              4) _bwd_kv_kernel: dk, dv from (dKV, dS)

with g_i = dout_i / z_i and dz_i = -(g_i . out_i). Each kernel reads its inputs once, so the cost is
linear in T. The rotation needs channel d paired with channel d +- D/2; instead of permuting registers
(which Triton cannot do cheaply) the partner channel is *loaded* from memory with permuted column
offsets. For the backward, rot(drq) = g @ (row-rotated KV)^T, so the state is loaded with permuted
rows instead. All arithmetic is fp32; dots take fp32 operands with a configurable input_precision
("ieee" = exact, "tf32" = tensor cores): the kernels are memory bound, so fp32 dots cost little.

The atomics make the summation order (and so the last bits of fp32 results) run-to-run
nondeterministic; a deterministic variant would loop over a sequence's chunks in one program, which
starves the GPU when one long sequence dominates a batch.

This module imports triton at import time: import it only through ``core.attention.kernels.ops`` (lazily).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from core.attention.linear import LINEAR_EPS  # one epsilon for every linear backend


def interpret_mode() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _phi(x):
    return tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))  # min(): no inf in the unused branch


@triton.jit
def _dphi(x):
    return tl.where(x > 0, 1.0, tl.exp(tl.minimum(x, 0.0)))


@triton.jit
def _chunk(CH_SEQ, CH_START, CU, BLOCK_T: tl.constexpr):
    """(sequence id, token offsets int64, token mask) of this program's chunk; seq < 0 = no work."""
    c = tl.program_id(0)
    seq = tl.load(CH_SEQ + c)
    start = tl.load(CH_START + c)
    end = tl.load(CU + tl.maximum(seq, 0) + 1)
    t = start + tl.arange(0, BLOCK_T)
    return seq, t.to(tl.int64), t < end


@triton.jit
def _features(X, t, tm, stride_t, COS, SIN, stride_c, D: tl.constexpr, BLOCK_D: tl.constexpr,
              HAS_ROT: tl.constexpr):
    """x, phi(x) and R phi(x) for a [BLOCK_T, BLOCK_D] tile (rows outside the chunk are 0)."""
    d = tl.arange(0, BLOCK_D)
    m = tm[:, None] & (d < D)[None, :]
    x = tl.load(X + t[:, None] * stride_t + d[None, :], mask=m, other=0.0).to(tl.float32)
    f = tl.where(m, _phi(x), 0.0)  # phi(0) = 1: padding rows must be zeroed explicitly
    if HAS_ROT:
        dp = (d + D // 2) % D  # partner channel of d
        sign = tl.where(d < D // 2, -1.0, 1.0)  # rotate_half: [x1, x2] -> [-x2, x1]
        xp = tl.load(X + t[:, None] * stride_t + dp[None, :], mask=m, other=0.0).to(tl.float32)
        fp = tl.where(m, _phi(xp), 0.0)
        c = tl.load(COS + t[:, None] * stride_c + d[None, :], mask=m, other=0.0).to(tl.float32)
        s = tl.load(SIN + t[:, None] * stride_c + d[None, :], mask=m, other=0.0).to(tl.float32)
        r = f * c + sign[None, :] * fp * s
    else:
        r = f
    return x, f, r


@triton.jit
def _state_ptrs(BUF, seq, h, H, D: tl.constexpr, DV: tl.constexpr, BLOCK_D: tl.constexpr,
                BLOCK_DV: tl.constexpr, ROTATE_ROWS: tl.constexpr):
    """Pointers, mask and row signs of the [D, DV] state of (seq, h); ROTATE_ROWS permutes rows d <-> d +- D/2."""
    d = tl.arange(0, BLOCK_D)
    e = tl.arange(0, BLOCK_DV)
    rows = (d + D // 2) % D if ROTATE_ROWS else d
    sign = tl.where(d < D // 2, -1.0, 1.0) if ROTATE_ROWS else tl.full([BLOCK_D], 1.0, tl.float32)
    base = (seq.to(tl.int64) * H + h) * D * DV
    return BUF + base + rows[:, None] * DV + e[None, :], (d < D)[:, None] & (e < DV)[None, :], sign


@triton.jit
def _state_kernel(K, V, COS, SIN, CU, CH_SEQ, CH_START, KV, S, H, stride_kt, stride_kh, stride_vt,
                  stride_vh, stride_c, D: tl.constexpr, DV: tl.constexpr, BLOCK_T: tl.constexpr,
                  BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, HAS_ROT: tl.constexpr, PREC: tl.constexpr):
    seq, t, tm = _chunk(CH_SEQ, CH_START, CU, BLOCK_T)
    if seq < 0:
        return
    h = tl.program_id(1)
    _, fk, rk = _features(K + h * stride_kh, t, tm, stride_kt, COS, SIN, stride_c, D, BLOCK_D, HAS_ROT)
    e = tl.arange(0, BLOCK_DV)
    v = tl.load(V + h * stride_vh + t[:, None] * stride_vt + e[None, :],
                mask=tm[:, None] & (e < DV)[None, :], other=0.0).to(tl.float32)
    kv = tl.dot(tl.trans(rk), v, input_precision=PREC)  # [BLOCK_D, BLOCK_DV], K dim = BLOCK_T >= 16
    ptrs, m, _ = _state_ptrs(KV, seq, h, H, D, DV, BLOCK_D, BLOCK_DV, False)
    tl.atomic_add(ptrs, kv, mask=m)
    d = tl.arange(0, BLOCK_D)
    tl.atomic_add(S + (seq.to(tl.int64) * H + h) * D + d, tl.sum(fk, axis=0), mask=d < D)


@triton.jit
def _out_kernel(Q, COS, SIN, CU, CH_SEQ, CH_START, KV, S, O, H, stride_qt, stride_qh, stride_ot,
                stride_oh, stride_c, eps, D: tl.constexpr, DV: tl.constexpr, BLOCK_T: tl.constexpr,
                BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, HAS_ROT: tl.constexpr, PREC: tl.constexpr):
    seq, t, tm = _chunk(CH_SEQ, CH_START, CU, BLOCK_T)
    if seq < 0:
        return
    h = tl.program_id(1)
    _, fq, rq = _features(Q + h * stride_qh, t, tm, stride_qt, COS, SIN, stride_c, D, BLOCK_D, HAS_ROT)
    ptrs, m, _ = _state_ptrs(KV, seq, h, H, D, DV, BLOCK_D, BLOCK_DV, False)
    kv = tl.load(ptrs, mask=m, other=0.0)
    d = tl.arange(0, BLOCK_D)
    s = tl.load(S + (seq.to(tl.int64) * H + h) * D + d, mask=d < D, other=0.0)
    z = tl.sum(fq * s[None, :], axis=1) + eps  # normalizer uses unrotated features (stays > 0)
    out = tl.dot(rq, kv, input_precision=PREC) / z[:, None]  # K dim = BLOCK_D >= 16
    e = tl.arange(0, BLOCK_DV)
    tl.store(O + h * stride_oh + t[:, None] * stride_ot + e[None, :], out.to(O.dtype.element_ty),
             mask=tm[:, None] & (e < DV)[None, :])


@triton.jit
def _feature_grad(x, state, STATE, seq, h, H, t, d, md, m, COS, SIN, stride_c, D: tl.constexpr, DV: tl.constexpr,
                  BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, HAS_ROT: tl.constexpr, PREC: tl.constexpr):
    """Gradient reaching the unrotated features of rows whose rotated features r met `state` as r @ state
    (dr = x @ state^T, x = the upstream gradient or V). With rotary, d f = dr * cos - rot(dr * sin)
    = dr * cos - rot(dr) * sin[partner], and rot(dr) = x @ (the signed, half-swapped state)^T."""
    dr = tl.dot(x, tl.trans(state), input_precision=PREC)  # [BLOCK_T, BLOCK_D]
    df = dr
    if HAS_ROT:
        rptrs, _, sign = _state_ptrs(STATE, seq, h, H, D, DV, BLOCK_D, BLOCK_DV, True)
        rstate = tl.load(rptrs, mask=m, other=0.0) * sign[:, None]
        rdr = tl.dot(x, tl.trans(rstate), input_precision=PREC)  # = rot(dr)
        dp = (d + D // 2) % D
        c = tl.load(COS + t[:, None] * stride_c + d[None, :], mask=md, other=0.0).to(tl.float32)
        sp = tl.load(SIN + t[:, None] * stride_c + dp[None, :], mask=md, other=0.0).to(tl.float32)
        df = dr * c - rdr * sp
    return df


@triton.jit
def _bwd_q_kernel(Q, COS, SIN, CU, CH_SEQ, CH_START, KV, S, O, DO, DQ, DKV, DS, H, stride_qt, stride_qh,
                  stride_ot, stride_oh, stride_dot, stride_doh, stride_dqt, stride_dqh, stride_c, eps,
                  D: tl.constexpr, DV: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                  BLOCK_DV: tl.constexpr, HAS_ROT: tl.constexpr, PREC: tl.constexpr):
    seq, t, tm = _chunk(CH_SEQ, CH_START, CU, BLOCK_T)
    if seq < 0:
        return
    h = tl.program_id(1)
    x, fq, rq = _features(Q + h * stride_qh, t, tm, stride_qt, COS, SIN, stride_c, D, BLOCK_D, HAS_ROT)
    d = tl.arange(0, BLOCK_D)
    e = tl.arange(0, BLOCK_DV)
    me = tm[:, None] & (e < DV)[None, :]
    md = tm[:, None] & (d < D)[None, :]
    s = tl.load(S + (seq.to(tl.int64) * H + h) * D + d, mask=d < D, other=0.0)
    z = tl.sum(fq * s[None, :], axis=1) + eps
    do = tl.load(DO + h * stride_doh + t[:, None] * stride_dot + e[None, :], mask=me, other=0.0).to(tl.float32)
    o = tl.load(O + h * stride_oh + t[:, None] * stride_ot + e[None, :], mask=me, other=0.0).to(tl.float32)
    g = do / z[:, None]  # d out / d numerator
    dz = -tl.sum(g * o, axis=1)  # d loss / d z
    ptrs, m, _ = _state_ptrs(KV, seq, h, H, D, DV, BLOCK_D, BLOCK_DV, False)
    kv = tl.load(ptrs, mask=m, other=0.0)
    dfq = _feature_grad(g, kv, KV, seq, h, H, t, d, md, m, COS, SIN, stride_c, D, DV, BLOCK_D, BLOCK_DV,
                        HAS_ROT, PREC)
    dfq += dz[:, None] * s[None, :]
    dq = dfq * _dphi(x)
    tl.store(DQ + h * stride_dqh + t[:, None] * stride_dqt + d[None, :], dq.to(DQ.dtype.element_ty), mask=md)
    # This chunk's share of the state gradients (rows outside the chunk have rq = 0, g = 0).
    dptrs, _, _ = _state_ptrs(DKV, seq, h, H, D, DV, BLOCK_D, BLOCK_DV, False)
    tl.atomic_add(dptrs, tl.dot(tl.trans(rq), g, input_precision=PREC), mask=m)
    tl.atomic_add(DS + (seq.to(tl.int64) * H + h) * D + d, tl.sum(dz[:, None] * fq, axis=0), mask=d < D)


@triton.jit
def _bwd_kv_kernel(K, V, COS, SIN, CU, CH_SEQ, CH_START, DKV, DS, DK, DV_, H, stride_kt, stride_kh,
                   stride_vt, stride_vh, stride_dkt, stride_dkh, stride_dvt, stride_dvh, stride_c,
                   D: tl.constexpr, DV: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_DV: tl.constexpr, HAS_ROT: tl.constexpr, PREC: tl.constexpr):
    seq, t, tm = _chunk(CH_SEQ, CH_START, CU, BLOCK_T)
    if seq < 0:
        return
    h = tl.program_id(1)
    x, fk, rk = _features(K + h * stride_kh, t, tm, stride_kt, COS, SIN, stride_c, D, BLOCK_D, HAS_ROT)
    d = tl.arange(0, BLOCK_D)
    e = tl.arange(0, BLOCK_DV)
    me = tm[:, None] & (e < DV)[None, :]
    md = tm[:, None] & (d < D)[None, :]
    v = tl.load(V + h * stride_vh + t[:, None] * stride_vt + e[None, :], mask=me, other=0.0).to(tl.float32)
    ptrs, m, _ = _state_ptrs(DKV, seq, h, H, D, DV, BLOCK_D, BLOCK_DV, False)
    dkv = tl.load(ptrs, mask=m, other=0.0)
    ds = tl.load(DS + (seq.to(tl.int64) * H + h) * D + d, mask=d < D, other=0.0)
    dfk = _feature_grad(v, dkv, DKV, seq, h, H, t, d, md, m, COS, SIN, stride_c, D, DV, BLOCK_D, BLOCK_DV,
                        HAS_ROT, PREC)
    dk = (dfk + ds[None, :]) * _dphi(x)
    tl.store(DK + h * stride_dkh + t[:, None] * stride_dkt + d[None, :], dk.to(DK.dtype.element_ty), mask=md)
    dv = tl.dot(rk, dkv, input_precision=PREC)  # [BLOCK_T, BLOCK_DV]
    tl.store(DV_ + h * stride_dvh + t[:, None] * stride_dvt + e[None, :], dv.to(DV_.dtype.element_ty), mask=me)


# --------------------------------------------------------------------------- host side


def config(d: int, dv: int, block_t: int | None = None, num_warps: int | None = None) -> dict:
    """Tile sizes. BLOCK_* >= 16 because tl.dot needs K >= 16; interpreter mode uses small tiles."""
    block_d, block_dv = max(16, triton.next_power_of_2(d)), max(16, triton.next_power_of_2(dv))
    if block_t is None:
        block_t = 16 if interpret_mode() else (64 if max(block_d, block_dv) <= 64 else 32)
    if num_warps is None:
        num_warps = 4 if max(block_d, block_dv) <= 64 else 8
    return dict(BLOCK_T=block_t, BLOCK_D=block_d, BLOCK_DV=block_dv, num_warps=num_warps)


def precision(dtype: torch.dtype) -> str:
    """fp32 inputs follow torch's TF32 switch; half inputs use tf32 dots on fp32 tiles (better than bf16)."""
    if interpret_mode() or (dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32):
        return "ieee"
    return "tf32"


def chunk_table(cu_seqlens: torch.Tensor, total: int, block_t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequence id, first token) of every BLOCK_T-token chunk, built on device without a host sync.

    The table has a static length cdiv(T, BLOCK_T) + B (>= the real number of chunks, since each sequence
    wastes less than one chunk); unused entries have sequence id -1 and their programs exit at once.
    """
    cu = cu_seqlens.to(torch.int64)
    batch = cu.numel() - 1
    n_chunks = (cu[1:] - cu[:-1] + block_t - 1) // block_t
    first_chunk = torch.cat([cu.new_zeros(1), torch.cumsum(n_chunks, 0)])  # [B+1]
    c = torch.arange(triton.cdiv(total, block_t) + batch, device=cu.device)
    seq = torch.searchsorted(first_chunk[1:], c, right=True)  # in [0, B]; B = past the last chunk
    safe = seq.clamp(max=max(batch - 1, 0))
    start = cu[safe] + (c - first_chunk[safe]) * block_t
    return torch.where(seq < batch, seq, -1).to(torch.int32), start.to(torch.int32)


def _rot_args(cos, sin, q):
    if cos is None:
        return q, q, 0, False  # dummies: never read when HAS_ROT is False
    cos, sin = cos.contiguous(), sin.contiguous()
    return cos, sin, cos.stride(0), True


def _last_contig(*ts):
    return [t if t.stride(-1) == 1 else t.contiguous() for t in ts]


def linear_fwd(q, k, v, cu_seqlens, cos=None, sin=None, block_t=None, num_warps=None):
    """-> (out [T, H, Dv], KV [B, H, D, Dv] fp32, S [B, H, D] fp32)."""
    q, k, v = _last_contig(q, k, v)
    total, heads, d = q.shape
    dv = v.shape[-1]
    batch = cu_seqlens.numel() - 1
    cu = cu_seqlens.to(torch.int32).contiguous()
    kv = torch.zeros(batch, heads, d, dv, device=q.device, dtype=torch.float32)
    s = torch.zeros(batch, heads, d, device=q.device, dtype=torch.float32)
    out = torch.empty(total, heads, dv, device=q.device, dtype=v.dtype)
    if total == 0 or batch == 0:
        return out, kv, s
    cfg = config(d, dv, block_t, num_warps)
    ch_seq, ch_start = chunk_table(cu, total, cfg["BLOCK_T"])
    cos_, sin_, stride_c, has_rot = _rot_args(cos, sin, q)
    grid = (ch_seq.numel(), heads)
    common = dict(D=d, DV=dv, HAS_ROT=has_rot, PREC=precision(q.dtype), **cfg)
    _state_kernel[grid](k, v, cos_, sin_, cu, ch_seq, ch_start, kv, s, heads, k.stride(0), k.stride(1),
                        v.stride(0), v.stride(1), stride_c, **common)
    _out_kernel[grid](q, cos_, sin_, cu, ch_seq, ch_start, kv, s, out, heads, q.stride(0), q.stride(1),
                      out.stride(0), out.stride(1), stride_c, LINEAR_EPS, **common)
    return out, kv, s


def linear_bwd(dout, q, k, v, cu_seqlens, cos, sin, out, kv, s, block_t=None, num_warps=None):
    """-> (dq, dk, dv); gradients w.r.t. cos/sin are not computed here (see ops.py)."""
    dout, q, k, v, out = _last_contig(dout, q, k, v, out)
    total, heads, d = q.shape
    dv_ = v.shape[-1]
    batch = cu_seqlens.numel() - 1
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    if total == 0 or batch == 0:
        return dq, dk, dv
    cu = cu_seqlens.to(torch.int32).contiguous()
    dkv, ds = torch.zeros_like(kv), torch.zeros_like(s)
    cfg = config(d, dv_, block_t, num_warps)
    ch_seq, ch_start = chunk_table(cu, total, cfg["BLOCK_T"])
    cos_, sin_, stride_c, has_rot = _rot_args(cos, sin, q)
    grid = (ch_seq.numel(), heads)
    common = dict(D=d, DV=dv_, HAS_ROT=has_rot, PREC=precision(q.dtype), **cfg)
    _bwd_q_kernel[grid](q, cos_, sin_, cu, ch_seq, ch_start, kv.contiguous(), s.contiguous(), out, dout, dq,
                        dkv, ds, heads, q.stride(0), q.stride(1), out.stride(0), out.stride(1), dout.stride(0),
                        dout.stride(1), dq.stride(0), dq.stride(1), stride_c, LINEAR_EPS, **common)
    _bwd_kv_kernel[grid](k, v, cos_, sin_, cu, ch_seq, ch_start, dkv, ds, dk, dv, heads, k.stride(0),
                         k.stride(1), v.stride(0), v.stride(1), dk.stride(0), dk.stride(1), dv.stride(0),
                         dv.stride(1), stride_c, **common)
    return dq, dk, dv


def compile_specs():
    """Every (kernel, signature, constexprs, options) the launchers above can produce for a GPU run,
    for ahead-of-time compilation tests (``triton.compile`` for a target GPU works without one)."""
    kernels = {
        "state": (_state_kernel, ["K", "V", "COS", "SIN"], ["KV", "S"]),
        "out": (_out_kernel, ["Q", "COS", "SIN", "O"], ["KV", "S"]),
        "bwd_q": (_bwd_q_kernel, ["Q", "COS", "SIN", "O", "DO", "DQ"], ["KV", "S", "DKV", "DS"]),
        "bwd_kv": (_bwd_kv_kernel, ["K", "V", "COS", "SIN", "DK", "DV_"], ["DKV", "DS"]),
    }
    dtypes = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    for dtype, tname in dtypes.items():
        for d in (16, 32, 64, 128):
            for has_rot in (True, False):
                # Every tiling (D) in bf16; the dtype (fp32 = other dot precision, fp16) and the no-rotary
                # branch only change loads/stores/dot flags, so one shape each keeps CI's compile time low.
                if (dtype != torch.bfloat16 or not has_rot) and d != 64:
                    continue
                if dtype == torch.float16 or (dtype == torch.float32 and not has_rot):
                    continue
                cfg = config(d, d, None, None) if not interpret_mode() else config(d, d, 64, 4)
                for name, (kernel, data_args, state_args) in kernels.items():
                    sig = {}
                    for arg in kernel.arg_names:
                        if arg in data_args:
                            sig[arg] = f"*{tname}"
                        elif arg in state_args:
                            sig[arg] = "*fp32"
                        elif arg in ("CU", "CH_SEQ", "CH_START"):
                            sig[arg] = "*i32"
                        elif arg == "eps":
                            sig[arg] = "fp32"
                        elif arg in ("D", "DV", "BLOCK_T", "BLOCK_D", "BLOCK_DV", "HAS_ROT", "PREC"):
                            sig[arg] = "constexpr"
                        else:
                            sig[arg] = "i32"
                    constexprs = dict(D=d, DV=d, HAS_ROT=has_rot, PREC=precision(dtype),
                                      BLOCK_T=cfg["BLOCK_T"], BLOCK_D=cfg["BLOCK_D"], BLOCK_DV=cfg["BLOCK_DV"])
                    yield (f"linear_{name}_{tname}_d{d}_rot{int(has_rot)}", kernel, sig, constexprs,
                           {"num_warps": cfg["num_warps"]})
