"""Differential attention (Ye et al. 2024, "Differential Transformer", arXiv:2410.05258):

    DiffAttn(X) = (softmax(Q1 K1^T / sqrt(d)) - lambda * softmax(Q2 K2^T / sqrt(d))) V

per head, followed by a per-head RMS normalization and a (1 - lambda_init) scale. Mapping onto the backend
signature: a head of width Dh = 2d holds [Q1 | Q2] (and [K1 | K2]) in its two halves, and V is the full Dh,
exactly the paper's layout (V of width 2d). Rotary is applied to Q1/K1 and Q2/K2 separately at width d, as in
the paper. The learned lambda is this family's own parameter module (`DifferentialLambda`, declared as the
backends' `parameters`): `MultiHeadAttention` owns it and passes `lam`. Documented deviations: lambda_init is
the constant 0.8 (the paper's depth-dependent 0.8 - 0.6 exp(-0.3 (l - 1)) needs the layer index, which a
backend does not see; the paper's ablation reports the constant as equally good), and the per-head norm has no
affine weights (the output projection that follows can absorb a per-channel scale).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from core.attention.registry import ANY_DEVICE, AttentionBackend, register_attention, rotate, spans
from core.attention.softmax import padded_sdpa

DIFF_LAMBDA_INIT = 0.8
DIFF_NORM_EPS = 1e-5


class DifferentialLambda(nn.Module):
    """The paper's re-parameterized scalar: lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init."""

    def __init__(self, dim: int, lambda_init: float = DIFF_LAMBDA_INIT):
        super().__init__()
        self.lambda_init = lambda_init
        self.vectors = nn.Parameter(torch.randn(4, dim) * 0.1)  # lq1, lk1, lq2, lk2 (init N(0, 0.1) as in the paper)

    def forward(self) -> dict[str, Tensor]:
        """The backend's keyword arguments: {"lam": lambda}."""
        lq1, lk1, lq2, lk2 = self.vectors
        return {"lam": torch.exp((lq1 * lk1).sum()) - torch.exp((lq2 * lk2).sum()) + self.lambda_init}


def lambda_for(head_dim: int) -> DifferentialLambda:
    """The lambda module of one layer: its vectors have the width d = Dh/2 of one softmax map's Q/K."""
    return DifferentialLambda(head_dim // 2)


def _half_width_rotary(cos: Tensor | None, sin: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """Rotary tables of width Dh/2 from the width-Dh ones: the half-width frequencies base^(-4i/Dh) are
    every other full-width frequency, so no positions are needed (half-split layout, see core.rotary). With
    several position axes every kept frequency still belongs to one axis, so scores stay relative per axis."""
    if cos is None:
        return None, None
    quarter = cos[:, : cos.shape[-1] // 2 : 2]
    squarter = sin[:, : sin.shape[-1] // 2 : 2]
    return torch.cat([quarter, quarter], dim=-1), torch.cat([squarter, squarter], dim=-1)


def _diff_split(q: Tensor, k: Tensor, cos: Tensor | None, sin: Tensor | None):
    dh = q.shape[-1]
    if dh % 2 or (cos is not None and dh % 4):
        raise ValueError(f"differential attention needs a head dim divisible by 2 (by 4 with rotary), got {dh}")
    c, s = _half_width_rotary(cos, sin)
    q1, q2 = (rotate(t, c, s) for t in q.chunk(2, dim=-1))
    k1, k2 = (rotate(t, c, s) for t in k.chunk(2, dim=-1))
    return q1, q2, k1, k2


def _diff_finish(a1: Tensor, a2: Tensor, lam: Tensor | float | None) -> Tensor:
    lam = DIFF_LAMBDA_INIT if lam is None else lam
    out = a1 - lam * a2
    out = out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + DIFF_NORM_EPS)  # per-head RMS norm
    return out * (1.0 - DIFF_LAMBDA_INIT)


def differential_reference_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None, lam=None) -> Tensor:
    """Test oracle: explicit loop over sequences, both softmax maps materialized."""
    q1, q2, k1, k2 = _diff_split(q, k, cos, sin)
    scale = 1.0 / math.sqrt(q1.shape[-1])
    outs = []
    for start, end in spans(cu_seqlens):
        if end == start:
            continue
        a, b, c, d, vs = (t[start:end].transpose(0, 1) for t in (q1, k1, q2, k2, v))  # [H, L, *]
        map1 = torch.softmax(a @ b.transpose(-1, -2) * scale, -1)
        map2 = torch.softmax(c @ d.transpose(-1, -2) * scale, -1)
        outs.append(_diff_finish((map1 @ vs).transpose(0, 1), (map2 @ vs).transpose(0, 1), lam))
    return torch.cat(outs, dim=0) if outs else torch.zeros_like(v)


def differential_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None, lam=None) -> Tensor:
    """Both softmax maps in one torch SDPA call (the two halves stacked as extra heads, V shared)."""
    total, heads, dh = v.shape
    if total == 0:
        return torch.zeros_like(v)
    q1, q2, k1, k2 = _diff_split(q, k, cos, sin)
    qq, kk, vv = torch.cat([q1, q2], dim=1), torch.cat([k1, k2], dim=1), torch.cat([v, v], dim=1)  # [T, 2H, *]
    out = padded_sdpa(qq, kk, vv, cu_seqlens, max_seqlen)
    return _diff_finish(out[:, :heads], out[:, heads:], lam)


register_attention(
    AttentionBackend("diff_reference", differential_reference_attention, "differential", (ANY_DEVICE,), (), True,
                     "differential attention, Python loop over sequences (test oracle)", parameters=lambda_for),
    reference=True,
)
register_attention(
    AttentionBackend("diff", differential_attention, "differential", (ANY_DEVICE,), (), True,
                     "differential attention (Differential Transformer): two softmax maps, learned lambda",
                     parameters=lambda_for)
)
