"""Linear attention backends (RoFormer eq. 19: elu+1 features, rotary in the numerator only): ``linear``
(O(T) per-sequence sums) and ``linear_reference`` (the oracle, explicit O(L^2) matrices). The feature map,
its derivative, the normalizer's epsilon and the token chunking live here once; the kernel custom ops in
``core.attention.kernels`` import them.

    out_i = sum_j (R_i phi(q_i))^T (R_j phi(k_j)) v_j / (sum_j phi(q_i)^T phi(k_j) + eps)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from core.attention.registry import ANY_DEVICE, AttentionBackend, register_attention, rotate, spans
from core.packing import segment_ids, unpack

LINEAR_EPS = 1e-6  # keeps the linear-attention normalizer away from 0
CHUNK_ELEMENTS = 1 << 24  # per-token temporaries ([n, H, D, Dv] outer products) stay around this size


def feature_map(x: Tensor) -> Tensor:
    return F.elu(x) + 1.0  # positive features so the normalizer is > 0


def feature_map_grad(x: Tensor) -> Tensor:
    """d(elu(x) + 1)/dx."""
    return torch.where(x > 0, torch.ones_like(x), torch.exp(x.clamp(max=0)))


def token_chunks(total: int, per_token: int) -> list[tuple[int, int]]:
    """Token ranges whose temporaries of `per_token` elements each stay around CHUNK_ELEMENTS (bounded
    memory while staying vectorized over the batch)."""
    step = max(1, CHUNK_ELEMENTS // max(1, per_token))
    return [(s, min(total, s + step)) for s in range(0, total, step)]


def segment_outer(a: Tensor, b: Tensor, seg: Tensor, batch: int) -> Tensor:
    """Sum over the tokens of each sequence of a_t b_t^T: [T, H, D], [T, H, E] -> [B, H, D, E]."""
    out = a.new_zeros(batch, a.shape[1], a.shape[2], b.shape[2])
    for s, e in token_chunks(a.shape[0], a.shape[1] * a.shape[2] * b.shape[2]):
        out = out.index_add(0, seg[s:e], torch.einsum("thd,the->thde", a[s:e], b[s:e]))
    return out


def gather_matvec(x: Tensor, state: Tensor, seg: Tensor, transpose: bool = False) -> Tensor:
    """Per token x_t @ state[seg_t] ([T,H,D] x [B,H,D,E] -> [T,H,E]); transpose uses state^T."""
    eq = "the,thde->thd" if transpose else "thd,thde->the"
    per = state.shape[1] * state.shape[2] * state.shape[3]
    parts = [torch.einsum(eq, x[s:e], state[seg[s:e]]) for s, e in token_chunks(x.shape[0], per)]
    width = state.shape[2] if transpose else state.shape[3]
    return torch.cat(parts) if parts else x.new_zeros(0, x.shape[1], width)


def _numerator_padded(rq: Tensor, rk: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
    """sum_j (rq_i . rk_j) v_j as two batched matmuls on the zero-padded layout. Zero padding contributes
    nothing to KV_s, and no [T, H, Dh, Dv] outer product is materialized, so this is several times faster
    than segment sums whenever padding is modest."""
    (rqp, mask), (rkp, _), (vp, _) = (unpack(t, cu_seqlens, max_seqlen) for t in (rq, rk, v))
    kv = torch.einsum("blhd,blhe->bhde", rkp, vp)
    return torch.einsum("blhd,bhde->blhe", rqp, kv)[mask]


def linear_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None) -> Tensor:
    """Linear attention with rotary, O(T) per-sequence sums."""
    total, heads, dh = q.shape
    batch = cu_seqlens.numel() - 1
    seg = segment_ids(cu_seqlens, total)
    fq, fk = feature_map(q), feature_map(k)
    rq, rk = rotate(fq, cos, sin), rotate(fk, cos, sin)
    # Normalizer uses the unrotated features (rotation could make it cross zero).
    k_sum = fk.new_zeros(batch, heads, dh).index_add(0, seg, fk)  # [B, H, Dh]
    denom = (fq * k_sum[seg]).sum(-1, keepdim=True) + LINEAR_EPS  # [T, H, 1]
    if batch * max_seqlen <= 4 * total:  # padding overhead bounded: batched matmuls win
        num = _numerator_padded(rq, rk, v, cu_seqlens, max_seqlen)
    else:  # very skewed lengths: stay strictly O(T) with segment sums KV_s = sum_{j in s} rk_j v_j^T
        num = gather_matvec(rq, segment_outer(rk, v, seg, batch), seg) if total else torch.zeros_like(v)
    return num / denom


def linear_reference_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None) -> Tensor:
    """Oracle for ``linear``: the same formula with explicit O(L^2) score matrices per sequence."""
    fq, fk = feature_map(q), feature_map(k)
    rq, rk = rotate(fq, cos, sin), rotate(fk, cos, sin)
    outs = []
    for start, end in spans(cu_seqlens):
        if end == start:
            continue
        rqs, rks, fqs, fks, vs = (t[start:end].transpose(0, 1) for t in (rq, rk, fq, fk, v))  # [H, L, *]
        scores = rqs @ rks.transpose(-1, -2)
        denom = (fqs @ fks.transpose(-1, -2)).sum(-1, keepdim=True) + LINEAR_EPS
        outs.append(((scores @ vs) / denom).transpose(0, 1))
    return torch.cat(outs, dim=0) if outs else torch.zeros_like(v)


register_attention(
    AttentionBackend("linear", linear_attention, "linear", (ANY_DEVICE,), (), True,
                     "linear attention, elu+1 features, rotary in the numerator (RoFormer eq. 19), O(T)")
)
register_attention(
    AttentionBackend("linear_reference", linear_reference_attention, "linear", (ANY_DEVICE,), (), True,
                     "linear attention computed with explicit O(L^2) matrices (test oracle)"),
    reference=True,
)
