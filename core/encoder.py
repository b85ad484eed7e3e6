"""Transformer encoder on the packed varlen layout (see ``core.packing``), plus task heads.

Shapes: tokens are packed [T, D] with ``cu_seqlens`` [B+1] / ``max_seqlen``; pooled features are
[B, D] (e.g. from ``core.packing.segment_mean``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from core.attention import MultiHeadAttention
from core.packing import pack, positions_from_cu_seqlens
from core.rotary import rotary_cos_sin

__all__ = [
    "EncoderConfig",
    "EncoderBlock",
    "Encoder",
    "TokenEncoder",
    "RegressionHead",
    "ClassificationHead",
    "TokenHead",
    "DenseHead",
]


@dataclass(frozen=True)
class EncoderConfig:
    d_model: int = 256
    n_heads: int = 8
    n_layers: int = 4
    d_ff: int = 1024
    dropout: float = 0.1
    attention: str = "sdpa"  # a name from core.attention.available_attention()
    rotary: bool = True
    max_len: int = 512  # longest sequence accepted by Encoder.forward

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            # A typo in a config must not silently fall back to a default.
            raise ValueError(f"unknown EncoderConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


class EncoderBlock(nn.Module):
    """Pre-norm block: x + drop(attn(LN(x))), then x + drop(FFN(LN(x))) with a GELU FFN."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.attention, rotary=cfg.rotary)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.d_ff, cfg.d_model)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        cu_seqlens: Tensor,
        max_seqlen: int,
        cos_sin: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), cu_seqlens, max_seqlen, cos_sin=cos_sin))
        return x + self.drop(self.ffn(self.norm2(x)))


class Encoder(nn.Module):
    """Stack of pre-norm blocks + final LayerNorm: x [T, D] -> [T, D]."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: Tensor, cu_seqlens: Tensor, max_seqlen: int, positions: Tensor | None = None) -> Tensor:
        """``positions``: [T] or [T, A] per-token positions for rotary (frame x joint, patch row x column,
        point x/y/z); default: the index inside each packed sequence."""
        if max_seqlen > self.cfg.max_len:
            raise ValueError(f"sequence of length {max_seqlen} exceeds EncoderConfig.max_len={self.cfg.max_len}")
        cos_sin = None
        if self.cfg.rotary:
            # One rotary table for all layers instead of one per layer.
            if positions is None:
                positions = positions_from_cu_seqlens(cu_seqlens, x.shape[0])
            cos_sin = rotary_cos_sin(positions, self.cfg.d_model // self.cfg.n_heads, dtype=x.dtype)
        for block in self.blocks:
            x = block(x, cu_seqlens, max_seqlen, cos_sin)
        return self.norm(x)


class TokenEncoder(nn.Module):
    """Token embedding + Encoder: ids [T] -> [T, D]."""

    def __init__(self, vocab_size: int, cfg: EncoderConfig, pad_id: int = 0):
        super().__init__()
        self.cfg, self.vocab_size, self.pad_id = cfg, vocab_size, pad_id
        self.embed = nn.Embedding(vocab_size, cfg.d_model, padding_idx=pad_id)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg)

    def forward(self, ids: Tensor, cu_seqlens: Tensor, max_seqlen: int, positions: Tensor | None = None) -> Tensor:
        return self.encoder(self.drop(self.embed(ids)), cu_seqlens, max_seqlen, positions)

    def encode_padded(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, int]:
        """Padded ids [B, L] + mask [B, L] -> (tokens [T, D], cu_seqlens, max_seqlen)."""
        packed_ids, cu_seqlens, max_seqlen = pack(ids, mask)
        return self.forward(packed_ids, cu_seqlens, max_seqlen), cu_seqlens, max_seqlen


class _MLPHead(nn.Module):
    """pooled [B, d_in] (+ extra [B, n_extra]) -> [B, n_out] through one GELU hidden layer."""

    def __init__(self, d_in: int, n_out: int, hidden: int = 256, dropout: float = 0.1, n_extra: int = 0):
        super().__init__()
        self.n_extra = n_extra
        self.net = nn.Sequential(
            nn.Linear(d_in + n_extra, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_out)
        )

    def forward(self, pooled: Tensor, extra: Tensor | None = None) -> Tensor:
        if self.n_extra:
            if extra is None or extra.shape != (pooled.shape[0], self.n_extra):
                got = None if extra is None else tuple(extra.shape)
                raise ValueError(f"head expects extra features of shape [{pooled.shape[0]}, {self.n_extra}], got {got}")
            pooled = torch.cat([pooled, extra.to(pooled.dtype)], dim=-1)
        elif extra is not None:
            raise ValueError("extra features given but the head was built with n_extra=0")
        return self.net(pooled)


class RegressionHead(_MLPHead):
    """Regression targets [B, n_targets]; ``extra`` carries e.g. molecular descriptors."""

    def __init__(self, d_in: int, n_targets: int, hidden: int = 256, dropout: float = 0.1, n_extra: int = 0):
        super().__init__(d_in, n_targets, hidden, dropout, n_extra)


class ClassificationHead(_MLPHead):
    """Class logits [B, n_classes] (no softmax: pair with cross-entropy)."""

    def __init__(self, d_in: int, n_classes: int, hidden: int = 256, dropout: float = 0.1, n_extra: int = 0):
        super().__init__(d_in, n_classes, hidden, dropout, n_extra)


class TokenHead(nn.Module):
    """Per-token logits [T, vocab_size] (BERT-style transform then decoder), for masked-token pretraining."""

    def __init__(self, d_model: int, vocab_size: int):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model))
        self.decoder = nn.Linear(d_model, vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.transform(x))


class DenseHead(nn.Module):
    """Per-token outputs [T, n_out] for dense predictions: a depth value per patch pixel, a spectral mask
    per time-frequency bin, 3-D coordinates per joint; with ``uncertainty`` a second [T, n_out] output holds
    the log-variance of a Gaussian (heteroscedastic regression, trained with ``gaussian_nll``)."""

    def __init__(self, d_model: int, n_out: int, hidden: int = 0, uncertainty: bool = False):
        super().__init__()
        self.n_out, self.uncertainty = n_out, uncertainty
        width = n_out * (2 if uncertainty else 1)
        self.net = (nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, width)) if hidden
                    else nn.Linear(d_model, width))

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        out = self.net(x)
        if not self.uncertainty:
            return out
        mean, log_var = out.split(self.n_out, dim=-1)
        return mean, log_var.clamp(-12.0, 12.0)   # bounded: exp() of it stays finite in float32


def gaussian_nll(mean: Tensor, log_var: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean negative log-likelihood (without the constant) of `target` under N(mean, exp(log_var)), over the
    entries where `mask` is True (missing targets: a depth pixel without ground truth, a hidden joint)."""
    nll = 0.5 * (log_var + (target - mean) ** 2 * torch.exp(-log_var))
    if mask is None:
        return nll.mean()
    mask = mask.to(nll.dtype).expand_as(nll)
    return (nll * mask).sum() / mask.sum().clamp(min=1.0)
