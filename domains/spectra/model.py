"""Models of the spectra domain on the shared core encoder.

Lifetime (MFliNet-style: histogram and IRF both go in): `LifetimeTokens` bins a pixel's histogram and its IRF
on the same log-spaced time bins (one small matrix product, inside the model), a token is a patch of
sqrt(histogram fraction) bins beside the same IRF bins; five per-pixel scalars (log photons, decay delay and
spread, IRF offset and width) are embedded and added to every token. Learned position embeddings (absolute
time matters for a decay; rotary is off by default), the core encoder (attention from `encoder.attention`),
mean pooling and an MLP head give tau1, tau2, A and tau_m, each scaled to [0, 1] over its simulated range.
tau_m is predicted directly (the mean of a product is not the product of means) and trained like the others
with an L1 loss (the metric is the mean absolute error, whose minimizer is the posterior median).

NIR: the preprocessed spectrum is cut into wavelength patches (tokens), optionally with the PLS scores of the
spectrum handed to the head beside the pooled encoding; the output is a correction added to a stored PLS.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from core.encoder import Encoder, EncoderConfig, RegressionHead
from core.runs import member_outputs

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


def lifetime_model(meta: Mapping[str, Any]) -> "LifetimeModel":
    return LifetimeModel(meta)


def nir_model(meta: Mapping[str, Any]) -> PatchEncoderModel:
    """The NIR correction network: its output is added to the stored PLS prediction (nir.predict_spectra).
    The last layer starts at zero, so the untrained model is PLS exactly and training can only move away
    from PLS where the training residuals ask for it (and validation keeps it: early stopping, calibrate)."""
    n_tokens = -(-meta["n_features"] // meta["patch"])   # the last patch is zero-padded
    model = PatchEncoderModel(n_tokens, meta["patch"], 1, meta["encoder"], meta["hidden"], meta["dropout"],
                              n_extra=meta["n_pls"])
    last = model.head.net[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return model


FINE_GATES = 16   # 1-gate bins from 6 gates before the IRF peak: the rise and tau1 (>= 0.2 ns = 4 gates) live here
N_MOMENTS = 4     # scalar features beside the bins: decay delay and spread, IRF offset and width


def log_bin_edges(gates: int, irf_center: float, bins: int) -> list[int]:
    """Integer gate edges of `bins` bins: [0, c-6) pooled (before the pulse: only background), FINE_GATES
    1-gate bins, then widths growing geometrically to the end of the window (a decay is smooth on a log
    scale, and late gates hold few photons each). 256 gates -> 32 bins: 1 + 16 + 15 of 3..36 gates."""
    start = int(max(1, round(irf_center) - 6))
    fine = min(FINE_GATES, gates - start - 1)
    rest = bins - 1 - fine
    if rest < 1:
        raise ValueError(f"lifetime.bins={bins} is too few: need at least {fine + 2}")
    rel = np.round(np.geomspace(fine, gates - start, rest + 1)).astype(int)
    for k in range(1, len(rel)):           # rounding can merge neighbours: keep every bin >= 1 gate wide
        rel[k] = max(rel[k], rel[k - 1] + 1)
    if rel[-1] > gates - start:
        raise ValueError(f"lifetime.bins={bins} is too many for {gates} gates")
    rel[-1] = gates - start
    return [0, *range(start, start + fine), *(start + rel).tolist()]


class LifetimeTokens(nn.Module):
    """counts [B, G] + irf [B, G] -> tokens [B, L, 2 * patch + 1 (+ N_MOMENTS)], all by one matrix product per
    input (no per-pixel Python): histogram and IRF binned on the same edges, side by side in each token.

    Legacy models (no `bin_edges` in their metadata) use 1-gate bins, counts as fractions x patch, no moments.
    Binned models use sqrt(fraction x bins) (Poisson noise becomes ~uniform across bins) and add four
    moments: decay delay (histogram mean minus IRF mean, ~ the intensity-weighted lifetime) and spread,
    IRF offset and width -- the cheap summary of how the IRF enters, so a 1-layer model need not learn it.
    """

    def __init__(self, meta: Mapping[str, Any]):
        super().__init__()
        g = int(meta["gates"])
        self.binned = "bin_edges" in meta
        edges = np.asarray(meta["bin_edges"] if self.binned else range(g + 1))
        self.patch, self.n_bins = int(meta["patch"]), len(edges) - 1
        self.n_tokens = self.n_bins // self.patch
        widths = np.diff(edges)
        # binned: the run of 1-gate bins after the first bin is a plain slice of the input; only the wider
        # bins (and the moments) need the matrix product, whose width is padded to a multiple of 8 (MKL
        # is 2-3x slower per pixel at 35 columns than at 32 or 24, measured)
        fine = int(np.argmax(widths[1:] > 1)) if self.binned else 0
        self.lo, self.hi = int(edges[1]), int(edges[1]) + fine
        coarse = [0, *range(fine + 1, self.n_bins)] if self.binned else list(range(self.n_bins))
        self.n_coarse = len(coarse)
        cols = -(-(self.n_coarse + 3) // 8) * 8 if self.binned else self.n_coarse + 3
        proj = np.zeros((g, cols), np.float32)
        for j, k in enumerate(coarse):
            proj[edges[k]:edges[k + 1], j] = 1.0
        # moments in ns from the nominal IRF peak: small numbers, no float32 cancellation
        t = (np.arange(g) + 0.5 - float(meta.get("irf_center_gates", 20.0))) * float(meta["gate_ps"]) / 1000
        c = self.n_coarse
        proj[:, c], proj[:, c + 1], proj[:, c + 2] = 1.0, t, t * t
        self.register_buffer("proj", torch.from_numpy(proj), persistent=False)   # rebuilt from metadata
        # the IRF is read over its support only (the simulator's IRFs are 0 beyond it; a real IRF is < 1 ns wide)
        self.irf_gates = int(meta.get("irf_gates", g))
        self.register_buffer("proj_irf", torch.from_numpy(proj[: self.irf_gates].copy()), persistent=False)
        # binned: the moments/log-count scalars are embedded once per pixel and added to every token (the same
        # as concatenating them to each token before the linear embedding, without the copies)
        self.dim = 2 * self.patch + (0 if self.binned else 1)
        self.n_scalars = 1 + N_MOMENTS if self.binned else 0

    def _bins(self, x: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
        if not self.binned:
            return projected[:, : self.n_coarse]
        return torch.cat([projected[:, :1], x[:, self.lo:self.hi], projected[:, 1:self.n_coarse]], 1)

    def forward(self, counts: torch.Tensor, irf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (tokens [B, L, dim], per-pixel scalars [B, n_scalars] or None for legacy models)."""
        b, n, p, c = counts.shape[0], self.n_tokens, self.patch, self.n_coarse
        irf = irf[:, : self.irf_gates]
        hc, hi = counts @ self.proj, irf @ self.proj_irf
        total, norm = hc[:, c:c + 1].clamp_min(1.0), hi[:, c:c + 1].clamp_min(1e-12)
        logn = torch.log10(total) - 2.5            # centred for 30-30000 photons
        if not self.binned:
            hist, irf_b = hc[:, : n * p] * (p / total), hi[:, : n * p] * (p / norm)
            parts = [hist.view(b, n, p), irf_b.view(b, n, p), logn.view(b, 1, 1).expand(b, n, 1)]
            return torch.cat(parts, dim=-1), None
        m1, i1 = hc[:, c + 1:c + 2] / total, hi[:, c + 1:c + 2] / norm
        sd = (hc[:, c + 2:c + 3] / total - m1 * m1).clamp_min(0).sqrt()
        isd = (hi[:, c + 2:c + 3] / norm - i1 * i1).clamp_min(0).sqrt()
        scalars = torch.cat([logn, m1 - i1 - 1.5, sd - 1.5, i1 * 10 - 1, isd * 10 - 1], 1)   # ~unit scale
        scale = float(self.n_bins) / 8
        hist = (self._bins(counts, hc)[:, : n * p] * (scale / total)).sqrt_()
        # clamp: IRFs from older prepared data (or users') may carry round-off negatives; sqrt would give NaN
        irf_b = (self._bins(irf, hi)[:, : n * p] * (scale / norm)).clamp_min_(0).sqrt_()
        return torch.cat([hist.view(b, n, p), irf_b.view(b, n, p)], dim=-1), scalars


class LifetimeModel(PatchEncoderModel):
    """The lifetime model: featurization (a fixed projection rebuilt from the metadata) + patch encoder."""

    def __init__(self, meta: Mapping[str, Any]):
        tokens = LifetimeTokens(meta)
        super().__init__(tokens.n_tokens, tokens.dim, len(LIFETIME_TARGETS), meta["encoder"], meta["hidden"],
                         meta["dropout"])
        self.tokens = tokens
        self.scalar_embed = nn.Linear(tokens.n_scalars, self.d_model, bias=False) if tokens.n_scalars else None

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        if "tokens" in batch:
            return super().forward(batch)
        tokens, scalars = self.tokens(batch["counts"], batch["irf"])
        if scalars is None:
            return super().forward({**batch, "tokens": tokens})
        b, length, _ = tokens.shape
        h = self.embed(tokens) + (self.position[:length] + self.scalar_embed(scalars)[:, None])
        cu = torch.arange(0, (b + 1) * length, length, dtype=torch.int32, device=tokens.device)
        pooled = self.encoder(h.reshape(b * length, self.d_model), cu, length).view(b, length, self.d_model).mean(1)
        return self.head(pooled)


class LifetimeCollate:
    """Indices -> raw float32 counts and IRFs (the model featurizes); the arrays stay in one place."""

    def __init__(self, counts: np.ndarray, irf: np.ndarray, y: np.ndarray | None):
        self.counts, self.irf, self.y = counts, irf, y

    def __call__(self, idx: list[int]) -> dict[str, Any]:
        idx = np.asarray(idx)
        batch = {"counts": torch.from_numpy(self.counts[idx].astype(np.float32)),
                 "irf": torch.from_numpy(np.ascontiguousarray(self.irf[idx], dtype=np.float32)), "size": len(idx)}
        if self.y is not None:
            batch["y"] = torch.as_tensor(self.y[idx], dtype=torch.float32)
        return batch


@torch.inference_mode()
def run_lifetime(members, counts: np.ndarray, irf: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Mean raw output over members, [n, 4]: contiguous slices (no index lists), inference mode, large
    batches (per-op overhead, not FLOPs, bounds a tiny model's speed on a CPU)."""
    n = len(counts)
    out = np.zeros((n, len(LIFETIME_TARGETS)), np.float32)
    for start in range(0, n, batch_size):
        c = torch.from_numpy(np.asarray(counts[start:start + batch_size], dtype=np.float32))
        i = torch.from_numpy(np.asarray(irf[start:start + batch_size], dtype=np.float32))
        for member in members:
            out[start:start + len(c)] += member.model({"counts": c.to(member.device),
                                                        "irf": i.to(member.device)}).float().cpu().numpy()
    return out / max(len(members), 1)


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


def run_members(members, collate, n: int, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Raw model outputs, mean and std over ensemble members: [n, K] each."""
    stacked = member_outputs(members, range(n), collate, batch_size, empty_shape=(0, 1))
    return stacked.mean(0), stacked.std(0)
