"""Models of the spectra domain on the shared core encoder.

Lifetime (MFliNet-style): a pixel's histogram and its IRF are cut into the same time patches; each token is
[histogram patch (normalized by the pixel's total counts), IRF patch, log10 total counts] embedded linearly,
plus a learned position embedding (absolute time matters for a decay; rotary is off by default). The encoder
(attention from `encoder.attention`, e.g. the differential backend) is followed by mean pooling and an MLP
head giving tau1, tau2, A and tau_m, each scaled to [0, 1] over its simulated range. tau_m is predicted
directly (the mean of a product is not the product of means) and trained like the others with an L1 loss
(the metric is the mean absolute error, whose minimizer is the posterior median).

NIR: the preprocessed spectrum is cut into wavelength patches (tokens), optionally with the PLS scores of the
spectrum handed to the head beside the pooled encoding.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from core.encoder import Encoder, EncoderConfig, RegressionHead

LIFETIME_TARGETS = ("tau1", "tau2", "a", "tau_m")


def target_ranges(meta: Mapping[str, Any]) -> np.ndarray:
    """[4, 2] (low, high) per target: how outputs are scaled to [0, 1]."""
    t1, t2 = meta["tau1"], meta["tau2"]
    return np.array([t1, t2, [0.0, 1.0], [min(t1[0], t2[0]), max(t1[1], t2[1])]], dtype=np.float64)


class PatchEncoderModel(nn.Module):
    """tokens [B, L, F] -> linear embedding + learned positions -> core Encoder -> mean pool -> head."""

    def __init__(self, n_tokens: int, token_dim: int, n_out: int, encoder: Mapping[str, Any], hidden: int,
                 dropout: float, n_extra: int = 0):
        super().__init__()
        cfg = EncoderConfig.from_dict(dict(encoder))
        self.n_tokens, self.d_model = n_tokens, cfg.d_model
        self.embed = nn.Linear(token_dim, cfg.d_model)
        self.position = nn.Parameter(torch.randn(n_tokens, cfg.d_model) * 0.02)
        self.encoder = Encoder(cfg)
        self.head = RegressionHead(cfg.d_model, n_out, hidden, dropout, n_extra)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        tokens = batch["tokens"]
        b, length, _ = tokens.shape
        h = (self.embed(tokens) + self.position[:length]).reshape(b * length, self.d_model)
        # every sample has the same number of tokens: cu_seqlens is a plain arange (no padding anywhere)
        cu = torch.arange(0, (b + 1) * length, length, dtype=torch.int32, device=tokens.device)
        pooled = self.encoder(h, cu, length).view(b, length, self.d_model).mean(1)
        return self.head(pooled, batch.get("extra"))


def lifetime_model(meta: Mapping[str, Any]) -> PatchEncoderModel:
    n_tokens = meta["gates"] // meta["patch"]
    return PatchEncoderModel(n_tokens, 2 * meta["patch"] + 1, len(LIFETIME_TARGETS), meta["encoder"],
                             meta["hidden"], meta["dropout"])


def nir_model(meta: Mapping[str, Any]) -> PatchEncoderModel:
    n_tokens = -(-meta["n_features"] // meta["patch"])   # the last patch is zero-padded
    return PatchEncoderModel(n_tokens, meta["patch"], 1, meta["encoder"], meta["hidden"], meta["dropout"],
                             n_extra=meta["n_pls"])


def lifetime_tokens(counts: np.ndarray | torch.Tensor, irf: np.ndarray | torch.Tensor, patch: int) -> torch.Tensor:
    """counts [B, G], irf [B, G] -> tokens [B, G // patch, 2 * patch + 1] (float32)."""
    counts = torch.as_tensor(counts, dtype=torch.float32)
    irf = torch.as_tensor(irf, dtype=torch.float32)
    b, g = counts.shape
    n = g // patch
    total = counts.sum(1, keepdim=True).clamp_min(1.0)
    hist = (counts / total)[:, : n * patch].view(b, n, patch) * patch   # ~1 per gate scale, not 1/G
    irf = (irf / irf.sum(1, keepdim=True).clamp_min(1e-12))[:, : n * patch].view(b, n, patch) * patch
    logn = torch.log10(total).view(b, 1, 1).expand(b, n, 1) - 2.5     # centred for 30-30000 photons
    return torch.cat([hist, irf, logn], dim=-1)


class LifetimeCollate:
    """Indices -> batch; the arrays stay in one place (no per-pixel Python objects for 100k+ pixels)."""

    def __init__(self, counts: np.ndarray, irf: np.ndarray, y: np.ndarray | None, patch: int):
        self.counts, self.irf, self.y, self.patch = counts, irf, y, patch

    def __call__(self, idx: list[int]) -> dict[str, Any]:
        idx = np.asarray(idx)
        batch = {"tokens": lifetime_tokens(self.counts[idx], self.irf[idx], self.patch), "size": len(idx)}
        if self.y is not None:
            batch["y"] = torch.as_tensor(self.y[idx], dtype=torch.float32)
        return batch


class NirCollate:
    """Indices -> batch of spectrum patches (+ PLS scores); mixup of random pairs when training."""

    def __init__(self, x: np.ndarray, extra: np.ndarray | None, y: np.ndarray | None, patch: int,
                 mixup: float = 0.0):
        self.x, self.extra, self.y, self.patch, self.mixup = x, extra, y, patch, mixup

    def __call__(self, idx: list[int]) -> dict[str, Any]:
        idx = np.asarray(idx)
        x = torch.as_tensor(self.x[idx], dtype=torch.float32)
        extra = None if self.extra is None else torch.as_tensor(self.extra[idx], dtype=torch.float32)
        y = None if self.y is None else torch.as_tensor(self.y[idx], dtype=torch.float32)
        if self.mixup > 0 and len(idx) > 1:
            # torch's global RNG (seeded by the trainer): same seed, same mixes
            lam = torch.distributions.Beta(self.mixup, self.mixup).sample((len(idx), 1))
            perm = torch.randperm(len(idx))
            x = lam * x + (1 - lam) * x[perm]
            extra = None if extra is None else lam * extra + (1 - lam) * extra[perm]
            y = None if y is None else lam * y + (1 - lam) * y[perm]
        n = -(-x.shape[1] // self.patch)
        x = torch.nn.functional.pad(x, (0, n * self.patch - x.shape[1]))   # zero-pad the last patch
        batch = {"tokens": x.reshape(len(idx), n, self.patch), "size": len(idx)}
        if extra is not None:
            batch["extra"] = extra
        if y is not None:
            batch["y"] = y
        return batch


def l1_loss(out: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
    return nn.functional.l1_loss(out.float(), batch["y"])


def mse_loss(out: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
    return nn.functional.mse_loss(out.float(), batch["y"])


@torch.no_grad()
def run_members(members, collate, n: int, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Raw model outputs, mean and std over ensemble members: [n, K] each."""
    outs = []
    for member in members:
        parts = []
        for start in range(0, n, batch_size):
            batch = collate(list(range(start, min(n, start + batch_size))))
            batch = {k: (v.to(member.device) if hasattr(v, "to") else v) for k, v in batch.items()}
            parts.append(member.model(batch).float().cpu().numpy())
        outs.append(np.concatenate(parts) if parts else np.zeros((0, 1)))
    stacked = np.stack(outs)
    return stacked.mean(0), stacked.std(0)
