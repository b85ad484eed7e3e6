"""Models of the spectra domain on the shared core encoder.

Lifetime (MFliNet-style: histogram and IRF both go in, plus the acquisition setting): `features.Featurizer`
turns a batch of histograms + IRFs of any setting into tokens on a fixed nanosecond axis and per-pixel and
per-setting scalars; the scalars are embedded and added to every token. Learned position embeddings
(absolute time matters for a decay), the core encoder (attention from `encoder.attention`), mean pooling and
an MLP head give tau1, tau2, A and tau_m, each scaled to [0, 1] over the prior's range (lifetimes on a log
scale). The L1 loss makes each output the posterior median under the training prior (a median does not
change under the monotone log). tau_m is predicted directly (the mean of a product is not the product of
means).

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
from domains.spectra.features import N_SCALARS, Featurizer, peak_time

LIFETIME_TARGETS = ("tau1", "tau2", "a", "tau_m")


def target_ranges(meta: Mapping[str, Any]) -> np.ndarray:
    """[4, 2] (low, high) per target on the scale the model predicts (ns or log ns for lifetimes, A as is)."""
    t1, t2 = np.asarray(meta["tau1"], float), np.asarray(meta["tau2"], float)
    if meta.get("target_scale", "log") == "log":
        t1, t2 = np.log(t1), np.log(t2)
    return np.array([t1, t2, [0.0, 1.0], [min(t1[0], t2[0]), max(t1[1], t2[1])]], dtype=np.float64)


def to_scaled(values: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """Physical [n, 4] (ns, A) -> [0, 1] per target."""
    rng = target_ranges(meta)
    v = np.asarray(values, float).copy()
    if meta.get("target_scale", "log") == "log":
        v[:, [0, 1, 3]] = np.log(v[:, [0, 1, 3]])
    return ((v - rng[:, 0]) / (rng[:, 1] - rng[:, 0])).astype(np.float32)


def to_physical(scaled: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """[0, 1] per target (clipped: the prior's range) -> physical [n, 4]."""
    rng = target_ranges(meta)
    v = rng[:, 0] + np.clip(scaled, 0, 1) * (rng[:, 1] - rng[:, 0])
    if meta.get("target_scale", "log") == "log":
        v[:, [0, 1, 3]] = np.exp(v[:, [0, 1, 3]])
    return v


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
    if "bin_edges" not in meta or "period_ns" not in meta.get("prior", {}):
        from core.errors import UserError
        raise UserError("this lifetime model predates the instrument-conditioned lifetime model (gate width, "
                        "gates and laser period as inputs); retrain it with `sciformer train -d spectra`")
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


class LifetimeModel(PatchEncoderModel):
    """Tokens + per-pixel/per-setting scalars (`features.Featurizer`) -> 4 scaled targets."""

    def __init__(self, meta: Mapping[str, Any]):
        patch = int(meta["patch"])
        super().__init__((len(meta["bin_edges"]) - 1) // patch, 3 * patch, len(LIFETIME_TARGETS), meta["encoder"],
                         meta["hidden"], meta["dropout"])
        self.scalar_embed = nn.Linear(N_SCALARS, self.d_model, bias=False)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        tokens, scalars = batch["tokens"], batch["scalars"]
        b, length, _ = tokens.shape
        h = self.embed(tokens) + (self.position[:length] + self.scalar_embed(scalars)[:, None])
        cu = torch.arange(0, (b + 1) * length, length, dtype=torch.int32, device=tokens.device)
        pooled = self.encoder(h.reshape(b * length, self.d_model), cu, length).view(b, length, self.d_model).mean(1)
        return self.head(pooled)


@torch.inference_mode()
def run_lifetime(members, counts: np.ndarray, irf: np.ndarray, gates: int, gate_ns: float, period_ns: float,
                 batch_size: int = 8192) -> np.ndarray:
    """Mean scaled output over members, [n, 4], for pixels of one acquisition setting: contiguous slices,
    inference mode, large batches (per-op overhead, not FLOPs, bounds a small model's speed on a CPU)."""
    meta = members[0].metadata["task"]
    n = len(counts)
    out = np.zeros((n, len(LIFETIME_TARGETS)), np.float32)
    for start in range(0, n, batch_size):
        c = torch.from_numpy(np.asarray(counts[start:start + batch_size], dtype=np.float32))
        i = torch.from_numpy(np.asarray(irf[start:start + batch_size], dtype=np.float32))
        tokens, scalars = Featurizer(meta, gates, gate_ns, period_ns, peak_time(i, gate_ns))(c, i)
        for member in members:
            out[start:start + len(c)] += member.model({"tokens": tokens.to(member.device),
                                                        "scalars": scalars.to(member.device)}).float().cpu().numpy()
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
