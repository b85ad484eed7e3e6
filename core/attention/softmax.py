"""Softmax attention backends: ``reference`` (the oracle: a loop over sequences) and ``sdpa`` (torch's
scaled_dot_product_attention on the padded or block-diagonal layout, whichever has fewer score entries)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from core.attention.registry import ANY_DEVICE, AttentionBackend, register_attention, rotate, spans
from core.packing import segment_ids, seqlens_from_cu_seqlens, unpack


def reference_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None) -> Tensor:
    """Test oracle: explicit loop over sequences, plain matmul + softmax."""
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    scale = 1.0 / math.sqrt(q.shape[-1])
    outs = []
    for start, end in spans(cu_seqlens):
        if end == start:
            continue
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # [H, L, Dh]
        probs = torch.softmax((qs @ ks.transpose(-1, -2)) * scale, dim=-1)
        outs.append((probs @ vs).transpose(0, 1))
    return torch.cat(outs, dim=0) if outs else torch.zeros_like(q)


def padded_sdpa(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
    """Packed [T, H, *] -> torch SDPA per sequence on [B, H, L, *] with a key-padding mask -> packed.
    V may be wider than Q/K (the differential backend stacks its two maps as extra heads and reuses this)."""
    batch = cu_seqlens.numel() - 1
    total, heads = q.shape[:2]
    if total == batch * max_seqlen:
        # All sequences have the same length: a free reshape and no mask, so the flash kernel can run.
        qb, kb, vb = (t.reshape(batch, max_seqlen, heads, t.shape[-1]).transpose(1, 2) for t in (q, k, v))
        return F.scaled_dot_product_attention(qb, kb, vb).transpose(1, 2).reshape(total, heads, v.shape[-1])
    (qb, mask), (kb, _), (vb, _) = (unpack(t, cu_seqlens, max_seqlen) for t in (q, k, v))
    # An empty sequence would have every key masked -> softmax of all -inf -> NaN (also in backward).
    # Let its (discarded) padding rows attend to the zero padding instead; they never get re-packed.
    empty = seqlens_from_cu_seqlens(cu_seqlens) == 0
    key_mask = (mask | empty[:, None])[:, None, None, :]  # [B, 1, 1, L], True = attend
    out = F.scaled_dot_product_attention(
        qb.transpose(1, 2), kb.transpose(1, 2), vb.transpose(1, 2), attn_mask=key_mask
    )
    return out.transpose(1, 2)[mask]


def _sdpa_block_diagonal(q, k, v, cu_seqlens, max_seqlen) -> Tensor:
    """All T tokens as one sequence with a block-diagonal mask: no unpacking, T^2 scores."""
    seg = segment_ids(cu_seqlens, q.shape[0])
    block = (seg[:, None] == seg[None, :])[None, None]  # every token sees itself: no empty rows, no NaN
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], attn_mask=block
    )
    return out[0].transpose(0, 1)


def sdpa_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None) -> Tensor:
    """torch SDPA on the packed layout; picks the layout with fewer score entries."""
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    total, batch = q.shape[0], cu_seqlens.numel() - 1
    if total == 0:
        return torch.zeros_like(q)
    # Block-diagonal costs T^2 scores, padded costs B*L^2; with a few sequences of very different
    # lengths the block-diagonal form is smaller. Cap it so the [T, T] mask stays small.
    if batch > 1 and total * total < batch * max_seqlen * max_seqlen and total <= 2048:
        return _sdpa_block_diagonal(q, k, v, cu_seqlens, max_seqlen)
    return padded_sdpa(q, k, v, cu_seqlens, max_seqlen)


register_attention(
    AttentionBackend("reference", reference_attention, "softmax", (ANY_DEVICE,), (), True,
                     "softmax attention, Python loop over sequences (test oracle)"),
    reference=True,
)
register_attention(
    AttentionBackend("sdpa", sdpa_attention, "softmax", (ANY_DEVICE,), (), True,
                     "torch scaled_dot_product_attention (flash / memory-efficient kernels where possible)")
)
