"""`MultiHeadAttention` on the packed layout with a pluggable backend, and an adapter for padded batches."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from core.attention.registry import AttentionBackend, get_backend, resolve_attention
from core.packing import pack, positions_from_cu_seqlens, unpack
from core.rotary import rotary_cos_sin


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
        backend = get_backend(attention)  # unknown names fail at construction, not at the first batch
        self.attention, self.rotary, self.rotary_base = attention, rotary, rotary_base
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        # The backend signature has no attention-probability dropout, so dropout is applied to the
        # attended values before the output projection instead.
        self.dropout = nn.Dropout(dropout)
        self._backends: dict[tuple[str, bool], AttentionBackend] = {}  # resolved lazily per device
        # A backend with learned parameters of its own (differential attention's lambda) brings a module;
        # this layer owns it (it trains and checkpoints with the layer) and passes its output to the backend.
        self.backend_params = backend.parameters(self.head_dim) if backend.parameters else None

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
        params = {} if self.backend_params is None else self.backend_params()
        out = backend.fn(q, k, v, cu_seqlens, max_seqlen, cos, sin, **params)
        return self.out(self.dropout(out.reshape(total, self.d_model)))
