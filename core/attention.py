"""The attention switch: one string in the config selects an attention backend from a registry.

Every backend works on the packed varlen layout (see ``core.packing``) and has the signature

    fn(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None) -> out

with q, k, v, out of shape [T, H, Dh] and optional rotary tables cos/sin [T, Dh]. Rotary is applied
inside the backend so that a fused GPU kernel can do it in the same pass. Attention is bidirectional,
scaled by 1/sqrt(Dh) and never crosses sequence boundaries.

GPU kernels (e.g. Triton) plug in by calling :func:`register_attention` with ``devices=("cuda",)`` and
``requires=("triton",)``; :func:`resolve_attention` falls back to the reference of the same ``kind``
when they cannot run, so a config written for a GPU still runs (slowly) on a laptop.
"""

from __future__ import annotations

import importlib
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.packing import pack, positions_from_cu_seqlens, segment_ids, seqlens_from_cu_seqlens, unpack

log = logging.getLogger("sciformer.attention")
from core.rotary import apply_rotary, rotary_cos_sin

__all__ = [
    "AttentionBackend",
    "register_attention",
    "unregister_attention",
    "available_attention",
    "resolve_attention",
    "padded_attention",
    "MultiHeadAttention",
    "ANY_DEVICE",
    "LINEAR_EPS",
]

ANY_DEVICE = "*"  # wildcard for AttentionBackend.devices: runs wherever torch runs
LINEAR_EPS = 1e-6  # keeps the linear-attention normalizer away from 0


@dataclass(frozen=True)
class AttentionBackend:
    name: str
    fn: Callable[..., Tensor]
    kind: str  # "softmax" | "linear" | ("differential" later); fallbacks stay within a kind
    devices: tuple[str, ...]  # torch device types, or (ANY_DEVICE,)
    requires: tuple[str, ...] = ()  # python modules that must import, e.g. ("triton",)
    supports_backward: bool = True
    description: str = ""
    fallback: str | None = None  # backend to use where this one cannot run (default: the kind's reference)

    def runs_on(self, device: torch.device) -> bool:
        return ANY_DEVICE in self.devices or device.type in self.devices


_REGISTRY: dict[str, AttentionBackend] = {}
_REFERENCE_FOR_KIND: dict[str, str] = {}  # kind -> name of the always-available oracle backend
_WARNED: set[tuple[str, str]] = set()  # (requested name, device type) already warned about
_IMPORTABLE: dict[str, bool] = {}


def register_attention(backend: AttentionBackend, *, reference: bool = False) -> AttentionBackend:
    """Add (or replace) a backend. ``reference=True`` makes it the fallback for its kind."""
    _REGISTRY[backend.name] = backend
    if reference:
        _REFERENCE_FOR_KIND[backend.kind] = backend.name
    return backend


def unregister_attention(name: str) -> None:
    """Remove a backend (used by tests that register throw-away backends)."""
    _REGISTRY.pop(name, None)
    for kind, ref in list(_REFERENCE_FOR_KIND.items()):
        if ref == name:
            del _REFERENCE_FOR_KIND[kind]


_KERNELS_LOADED = False


def _load_kernel_backends() -> None:
    """Register the custom-op/Triton backends of core.kernels on first lookup. Lazy because core.kernels
    imports this module (and must not import triton until a kernel actually runs)."""
    global _KERNELS_LOADED
    if not _KERNELS_LOADED:
        _KERNELS_LOADED = True
        from core.kernels import register_kernel_backends
        register_kernel_backends()


def available_attention() -> dict[str, AttentionBackend]:
    """All registered backends by name (a copy; includes ones that cannot run here)."""
    _load_kernel_backends()
    return dict(_REGISTRY)


def _importable(module: str) -> bool:
    if module not in _IMPORTABLE:
        try:
            importlib.import_module(module)
            _IMPORTABLE[module] = True
        except Exception:  # a broken install (not only ImportError) also means "cannot use it"
            _IMPORTABLE[module] = False
    return _IMPORTABLE[module]


def _why_unusable(backend: AttentionBackend, device: torch.device, need_backward: bool) -> str | None:
    if not backend.runs_on(device):
        return f"it runs on {backend.devices}, not on device type '{device.type}'"
    missing = [m for m in backend.requires if not _importable(m)]
    if missing:
        return f"required module(s) {missing} cannot be imported"
    if need_backward and not backend.supports_backward:
        return "it has no backward pass and gradients are needed"
    return None


def resolve_attention(
    name: str, device: torch.device | str, need_backward: bool = False
) -> AttentionBackend:
    """The backend called ``name`` if it can run on ``device``, else the reference of its kind.

    Unknown names raise ValueError listing the known ones. A fallback to the kind's reference warns once per
    (name, device type); a backend's own declared `fallback` (e.g. a GPU kernel's vectorized CPU path) is the
    designed behaviour, so it is only logged, and a GPU default does not warn on every CPU run.
    """
    device = torch.device(device)
    _load_kernel_backends()
    if name not in _REGISTRY:
        raise ValueError(f"unknown attention backend {name!r}; known: {sorted(_REGISTRY)}")
    backend = _REGISTRY[name]
    reason = _why_unusable(backend, device, need_backward)
    if reason is None:
        return backend
    ref_name = backend.fallback or _REFERENCE_FOR_KIND.get(backend.kind)
    if ref_name is None or ref_name == name:
        raise RuntimeError(f"attention backend {name!r} cannot be used: {reason}; no fallback for kind {backend.kind!r}")
    if (name, device.type) not in _WARNED and backend.fallback:
        _WARNED.add((name, device.type))
        log.info("attention backend %r: %s; using its declared fallback %r", name, reason, ref_name)
    elif (name, device.type) not in _WARNED:
        _WARNED.add((name, device.type))
        warnings.warn(
            f"attention backend {name!r} cannot be used: {reason}; falling back to {ref_name!r}",
            RuntimeWarning,
            stacklevel=2,
        )
    return _REGISTRY[ref_name]


def _rotate(x: Tensor, cos: Tensor | None, sin: Tensor | None) -> Tensor:
    return x if cos is None else apply_rotary(x, cos, sin)


def _spans(cu_seqlens: Tensor) -> list[tuple[int, int]]:
    cu = cu_seqlens.tolist()
    return list(zip(cu[:-1], cu[1:]))


# --------------------------------------------------------------------------- softmax backends


def reference_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None) -> Tensor:
    """Test oracle: explicit loop over sequences, plain matmul + softmax."""
    q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
    scale = 1.0 / math.sqrt(q.shape[-1])
    outs = []
    for start, end in _spans(cu_seqlens):
        if end == start:
            continue
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # [H, L, Dh]
        probs = torch.softmax((qs @ ks.transpose(-1, -2)) * scale, dim=-1)
        outs.append((probs @ vs).transpose(0, 1))
    return torch.cat(outs, dim=0) if outs else torch.zeros_like(q)


def _sdpa_padded(q, k, v, cu_seqlens, max_seqlen) -> Tensor:
    """Unpack to [B, H, L, Dh] with a key-padding mask, run SDPA, re-pack."""
    batch = cu_seqlens.numel() - 1
    total, heads, dh = q.shape
    if total == batch * max_seqlen:
        # All sequences have the same length: a free reshape and no mask, so the flash kernel can run.
        qb, kb, vb = (t.reshape(batch, max_seqlen, heads, dh).transpose(1, 2) for t in (q, k, v))
        return F.scaled_dot_product_attention(qb, kb, vb).transpose(1, 2).reshape(total, heads, dh)
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
    q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
    total, batch = q.shape[0], cu_seqlens.numel() - 1
    if total == 0:
        return torch.zeros_like(q)
    # Block-diagonal costs T^2 scores, padded costs B*L^2; with a few sequences of very different
    # lengths the block-diagonal form is smaller. Cap it so the [T, T] mask stays small.
    if batch > 1 and total * total < batch * max_seqlen * max_seqlen and total <= 2048:
        return _sdpa_block_diagonal(q, k, v, cu_seqlens, max_seqlen)
    return _sdpa_padded(q, k, v, cu_seqlens, max_seqlen)


# --------------------------------------------------------------------------- linear backends


def _feature_map(x: Tensor) -> Tensor:
    return F.elu(x) + 1.0  # positive features so the normalizer is > 0


def _linear_numerator_segments(rq: Tensor, rk: Tensor, v: Tensor, seg: Tensor, batch: int) -> Tensor:
    """sum_j (rq_i . rk_j) v_j via segment sums KV_s = sum_{j in s} rk_j v_j^T, gathered per token."""
    total, heads, dh = rq.shape
    # Each token contributes a [H, Dh, Dv] outer product; chunking over tokens bounds that memory
    # (~2^24 elements per chunk) while staying vectorized over the batch.
    chunk = max(1, (1 << 24) // max(1, heads * dh * v.shape[-1]))
    kv = v.new_zeros(batch, heads, dh, v.shape[-1])
    for s in range(0, total, chunk):
        kv = kv.index_add(0, seg[s : s + chunk], torch.einsum("thd,the->thde", rk[s : s + chunk], v[s : s + chunk]))
    parts = [torch.einsum("thd,thde->the", rq[s : s + chunk], kv[seg[s : s + chunk]]) for s in range(0, total, chunk)]
    return torch.cat(parts, dim=0) if parts else torch.zeros_like(v)


def _linear_numerator_padded(rq: Tensor, rk: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
    """Same as the segment version, but as two batched matmuls on the zero-padded layout.

    Zero padding contributes nothing to KV_s, and no [T, H, Dh, Dv] outer product is materialized,
    so this is several times faster whenever padding is modest.
    """
    (rqp, mask), (rkp, _), (vp, _) = (unpack(t, cu_seqlens, max_seqlen) for t in (rq, rk, v))
    kv = torch.einsum("blhd,blhe->bhde", rkp, vp)
    return torch.einsum("blhd,bhde->blhe", rqp, kv)[mask]


def linear_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None) -> Tensor:
    """Linear attention with rotary (RoFormer eq. 19), O(T) per-sequence sums.

    out_i = sum_j (R_i phi(q_i))^T (R_j phi(k_j)) v_j / (sum_j phi(q_i)^T phi(k_j) + eps)
    """
    total, heads, dh = q.shape
    batch = cu_seqlens.numel() - 1
    seg = segment_ids(cu_seqlens, total)
    fq, fk = _feature_map(q), _feature_map(k)
    rq, rk = _rotate(fq, cos, sin), _rotate(fk, cos, sin)
    # Normalizer uses the unrotated features (rotation could make it cross zero).
    k_sum = fk.new_zeros(batch, heads, dh).index_add(0, seg, fk)  # [B, H, Dh]
    denom = (fq * k_sum[seg]).sum(-1, keepdim=True) + LINEAR_EPS  # [T, H, 1]
    if batch * max_seqlen <= 4 * total:  # padding overhead bounded: batched matmuls win
        num = _linear_numerator_padded(rq, rk, v, cu_seqlens, max_seqlen)
    else:  # very skewed lengths: stay strictly O(T) with segment sums
        num = _linear_numerator_segments(rq, rk, v, seg, batch)
    return num / denom


def linear_reference_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None) -> Tensor:
    """Oracle for ``linear``: the same formula with explicit O(L^2) score matrices per sequence."""
    fq, fk = _feature_map(q), _feature_map(k)
    rq, rk = _rotate(fq, cos, sin), _rotate(fk, cos, sin)
    outs = []
    for start, end in _spans(cu_seqlens):
        if end == start:
            continue
        rqs, rks, fqs, fks, vs = (t[start:end].transpose(0, 1) for t in (rq, rk, fq, fk, v))  # [H, L, *]
        scores = rqs @ rks.transpose(-1, -2)
        denom = (fqs @ fks.transpose(-1, -2)).sum(-1, keepdim=True) + LINEAR_EPS
        outs.append(((scores @ vs) / denom).transpose(0, 1))
    return torch.cat(outs, dim=0) if outs else torch.zeros_like(v)


register_attention(
    AttentionBackend("reference", reference_attention, "softmax", (ANY_DEVICE,), (), True,
                     "softmax attention, Python loop over sequences (test oracle)"),
    reference=True,
)
register_attention(
    AttentionBackend("sdpa", sdpa_attention, "softmax", (ANY_DEVICE,), (), True,
                     "torch scaled_dot_product_attention (flash / memory-efficient kernels where possible)")
)
register_attention(
    AttentionBackend("linear", linear_attention, "linear", (ANY_DEVICE,), (), True,
                     "linear attention, elu+1 features, rotary in the numerator (RoFormer eq. 19), O(T)")
)
register_attention(
    AttentionBackend("linear_reference", linear_reference_attention, "linear", (ANY_DEVICE,), (), True,
                     "linear attention computed with explicit O(L^2) matrices (test oracle)"),
    reference=True,
)


def padded_attention(
    name_or_fn: str | Callable[..., Tensor],
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor,
    cos: Tensor | None = None,
    sin: Tensor | None = None,
) -> Tensor:
    """Adapter for padded batches: q, k, v [B, L, H, Dh], mask [B, L], cos/sin [B, L, Dh] -> [B, L, H, Dh].

    Padding positions come back as zeros.
    """
    fn = resolve_attention(name_or_fn, q.device).fn if isinstance(name_or_fn, str) else name_or_fn
    (qp, cu, max_len), (kp, _, _), (vp, _, _) = (pack(t, mask) for t in (q, k, v))
    cs = (pack(cos, mask)[0], pack(sin, mask)[0]) if cos is not None else (None, None)
    out = fn(qp, kp, vp, cu, max_len, *cs)
    padded, _ = unpack(out, cu, q.shape[1])
    return padded


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention on the packed layout with a pluggable backend."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        attention: str = "sdpa",
        rotary: bool = True,
        rotary_base: float = 10000.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        if rotary and self.head_dim % 2 != 0:
            raise ValueError(f"rotary embeddings need an even head dim, got head_dim={self.head_dim}")
        if attention not in available_attention():  # fail at construction, not at the first batch
            raise ValueError(f"unknown attention backend {attention!r}; known: {sorted(_REGISTRY)}")
        self.attention, self.rotary, self.rotary_base = attention, rotary, rotary_base
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        # The backend signature has no attention-probability dropout, so dropout is applied to the
        # attended values before the output projection instead.
        self.dropout = nn.Dropout(dropout)
        self._backends: dict[tuple[str, bool], AttentionBackend] = {}  # resolved lazily per device
        # kind "differential" (see the end of this module) subtracts a second softmax map scaled by a
        # learned lambda; the module owns lambda's parameters and hands lambda to the backend.
        differential = _REGISTRY[attention].kind == "differential"
        self.diff_lambda = DifferentialLambda(self.head_dim // 2) if differential else None

    def backend_for(self, device: torch.device, need_backward: bool = False) -> AttentionBackend:
        key = (str(device), need_backward)
        if key not in self._backends:
            self._backends[key] = resolve_attention(self.attention, device, need_backward)
        return self._backends[key]

    def rotary_tables(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        return rotary_cos_sin(positions, self.head_dim, self.rotary_base, dtype, positions.device)

    def forward(
        self,
        x: Tensor,
        cu_seqlens: Tensor,
        max_seqlen: int,
        positions: Tensor | None = None,
        cos_sin: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x [T, D] -> [T, D]. ``cos_sin`` lets a stack of layers share one rotary table."""
        total = x.shape[0]
        q, k, v = self.qkv(x).view(total, 3, self.n_heads, self.head_dim).unbind(dim=1)
        cos = sin = None
        if self.rotary:
            if cos_sin is None:
                if positions is None:
                    positions = positions_from_cu_seqlens(cu_seqlens, total)
                cos_sin = self.rotary_tables(positions, x.dtype)
            cos, sin = cos_sin
        need_backward = torch.is_grad_enabled() and (x.requires_grad or self.qkv.weight.requires_grad)
        backend = self.backend_for(x.device, need_backward)
        extra = {} if self.diff_lambda is None else {"lam": self.diff_lambda()}
        out = backend.fn(q, k, v, cu_seqlens, max_seqlen, cos, sin, **extra)
        return self.out(self.dropout(out.reshape(total, self.d_model)))


# --------------------------------------------------------------------------- differential backends
# Differential attention (Ye et al. 2024, "Differential Transformer", arXiv:2410.05258):
#     DiffAttn(X) = (softmax(Q1 K1^T / sqrt(d)) - lambda * softmax(Q2 K2^T / sqrt(d))) V
# per head, followed by a per-head RMS normalization and a (1 - lambda_init) scale. Mapping onto the
# backend signature: a head of width Dh = 2d holds [Q1 | Q2] (and [K1 | K2]) in its two halves, and V is
# the full Dh, exactly the paper's layout (V of width 2d). Rotary is applied to Q1/K1 and Q2/K2 separately
# at width d, as in the paper. Documented deviations: lambda_init is the constant 0.8 (the paper's
# depth-dependent 0.8 - 0.6 exp(-0.3 (l - 1)) needs the layer index, which a backend does not see; the
# paper's ablation reports the constant as equally good), and the per-head norm has no affine weights
# (the output projection that follows can absorb a per-channel scale).

DIFF_LAMBDA_INIT = 0.8
DIFF_NORM_EPS = 1e-5


class DifferentialLambda(nn.Module):
    """The paper's re-parameterized scalar: lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init."""

    def __init__(self, dim: int, lambda_init: float = DIFF_LAMBDA_INIT):
        super().__init__()
        self.lambda_init = lambda_init
        self.vectors = nn.Parameter(torch.randn(4, dim) * 0.1)  # lq1, lk1, lq2, lk2 (init N(0, 0.1) as in the paper)

    def forward(self) -> Tensor:
        lq1, lk1, lq2, lk2 = self.vectors
        return torch.exp((lq1 * lk1).sum()) - torch.exp((lq2 * lk2).sum()) + self.lambda_init


def _half_width_rotary(cos: Tensor | None, sin: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """Rotary tables of width Dh/2 from the width-Dh ones: the half-width frequencies base^(-4i/Dh) are
    every other full-width frequency, so no positions are needed (half-split layout, see core.rotary)."""
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
    q1, q2 = (_rotate(t, c, s) for t in q.chunk(2, dim=-1))
    k1, k2 = (_rotate(t, c, s) for t in k.chunk(2, dim=-1))
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
    lam = DIFF_LAMBDA_INIT if lam is None else lam
    outs = []
    for start, end in _spans(cu_seqlens):
        if end == start:
            continue
        a, b, c, d, vs = (t[start:end].transpose(0, 1) for t in (q1, k1, q2, k2, v))  # [H, L, *]
        diff = torch.softmax(a @ b.transpose(-1, -2) * scale, -1) - lam * torch.softmax(c @ d.transpose(-1, -2) * scale, -1)
        out = (diff @ vs).transpose(0, 1)
        outs.append(out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + DIFF_NORM_EPS) * (1.0 - DIFF_LAMBDA_INIT))
    return torch.cat(outs, dim=0) if outs else torch.zeros_like(v)


def differential_attention(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None, lam=None) -> Tensor:
    """Both softmax maps in one torch SDPA call (the two halves stacked as extra heads, V shared)."""
    total, heads, dh = v.shape
    if total == 0:
        return torch.zeros_like(v)
    q1, q2, k1, k2 = _diff_split(q, k, cos, sin)
    qq, kk, vv = torch.cat([q1, q2], dim=1), torch.cat([k1, k2], dim=1), torch.cat([v, v], dim=1)  # [T, 2H, *]
    batch = cu_seqlens.numel() - 1
    if total == batch * max_seqlen:  # equal lengths: a free reshape, no mask
        qb, kb, vb = (t.reshape(batch, max_seqlen, 2 * heads, -1).transpose(1, 2) for t in (qq, kk, vv))
        out = F.scaled_dot_product_attention(qb, kb, vb).transpose(1, 2).reshape(total, 2 * heads, dh)
    else:
        (qb, mask), (kb, _), (vb, _) = (unpack(t, cu_seqlens, max_seqlen) for t in (qq, kk, vv))
        empty = seqlens_from_cu_seqlens(cu_seqlens) == 0  # see _sdpa_padded: no all-masked rows
        key_mask = (mask | empty[:, None])[:, None, None, :]
        out = F.scaled_dot_product_attention(qb.transpose(1, 2), kb.transpose(1, 2), vb.transpose(1, 2),
                                             attn_mask=key_mask).transpose(1, 2)[mask]
    return _diff_finish(out[:, :heads], out[:, heads:], lam)


register_attention(
    AttentionBackend("diff_reference", differential_reference_attention, "differential", (ANY_DEVICE,), (), True,
                     "differential attention, Python loop over sequences (test oracle)"),
    reference=True,
)
register_attention(
    AttentionBackend("diff", differential_attention, "differential", (ANY_DEVICE,), (), True,
                     "differential attention (Differential Transformer): two softmax maps, learned lambda")
)
