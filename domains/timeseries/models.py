"""Forecasters on the core encoder: iTransformer and a Gateformer-style variant, with exogenous tokens.

iTransformer (Liu et al., ICLR 2024): each variate's whole lookback window is ONE token; attention runs
across variates; per-window normalization (RevIN) is undone at the output. Known-future covariates
(calendar, holiday flags, your regressors) enter as extra tokens embedding their lookback + horizon values,
so the model sees the future calendar; their tokens produce no forecast.

Gateformer-style (Lan et al., 2025): a variate token is built from temporal attention over the window's
patches, gated against the plain linear embedding; the cross-variate output is gated against the token.

Both add the closed-form forecaster chosen on validation (closedform.py) as a linear path that starts at its
solution: a per-channel calendar cycle (CycleNet's residual cycle, indexed by each step's calendar phase), a
linear map lookback -> horizon shared by every channel (DLinear's function class) on the train-standardized or
the per-window normalized window, and optionally a per-channel linear term in the covariates and calendar
features. The transformer's correction starts at zero, so the untrained model forecasts exactly like that
closed form, and training (which keeps the starting weights when no epoch beats them on validation) can only
move away from it where validation says so. `transformer_on = False` zeroes the correction (an ablation).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from core.encoder import Encoder, EncoderConfig
from core.packing import uniform_cu_seqlens


class TemporalGate(nn.Module):
    """Gateformer's per-variate temporal view: patches of the window -> attention -> gated pooled token."""

    def __init__(self, lookback: int, patch: int, enc: EncoderConfig):
        super().__init__()
        self.patch = patch
        self.n_patches = -(-lookback // patch)
        self.pad = self.n_patches * patch - lookback
        self.embed = nn.Linear(patch, enc.d_model)
        self.encoder = Encoder(EncoderConfig(**{**enc.to_dict(), "n_layers": 1, "rotary": True}))
        self.score = nn.Linear(enc.d_model, 1)          # attention pooling over patches
        self.gate = nn.Linear(2 * enc.d_model, enc.d_model)

    def forward(self, x: Tensor, linear_token: Tensor) -> Tensor:
        """x [N, L] normalized windows; linear_token [N, D] -> gated token [N, D]."""
        n = x.shape[0]
        x = nn.functional.pad(x, (self.pad, 0), mode="replicate") if self.pad else x
        patches = self.embed(x.reshape(n * self.n_patches, self.patch))
        h = self.encoder(patches, uniform_cu_seqlens(n, self.n_patches, x.device), self.n_patches)
        h = h.reshape(n, self.n_patches, -1)
        pooled = (torch.softmax(self.score(h), dim=1) * h).sum(1)
        g = torch.sigmoid(self.gate(torch.cat([pooled, linear_token], -1)))
        return g * pooled + (1 - g) * linear_token


class Forecaster(nn.Module):
    """batch: x [B, L, C] (train-standardized targets), exo [B, L+H, E] -> forecast [B, H, C]."""

    def __init__(self, n_targets: int, n_exo: int, lookback: int, horizon: int, encoder: Mapping[str, Any],
                 arch: str = "itransformer", patch: int = 16, phases: int = 0, mask_input: bool = False,
                 linear_norm: str = "global", linear_exo: bool = False):
        super().__init__()
        enc = EncoderConfig.from_dict({**dict(encoder), "rotary": False})   # variates have no order
        self.n_targets, self.n_exo, self.lookback, self.horizon = n_targets, n_exo, lookback, horizon
        self.arch = arch
        self.transformer_on = True
        d = enc.d_model
        # with data.allow_missing the token also embeds the observed-mask of the window (missing = 0 in x)
        self.mask_input = mask_input
        self.embed = nn.Linear(2 * lookback if mask_input else lookback, d)
        self.exo_embed = nn.Linear(lookback + horizon, d) if n_exo else None
        # which token is which variate (attention itself is permutation-equivariant)
        self.variate = nn.Parameter(torch.zeros(n_targets + n_exo, d))
        self.temporal = TemporalGate(lookback, patch, enc) if arch == "gateformer" else None
        self.drop = nn.Dropout(enc.dropout)
        self.encoder = Encoder(enc)
        self.out_gate = nn.Linear(2 * d, d) if arch == "gateformer" else None
        self.project = nn.Linear(d, horizon)
        self.linear = nn.Linear(lookback, horizon)
        self.linear_norm = linear_norm
        # per channel: weights of the flattened exogenous window (+ an intercept) for every horizon step
        self.exo_linear = nn.Parameter(torch.zeros(n_targets, n_exo * (lookback + horizon) + 1, horizon)) \
            if linear_exo else None
        # one row per training phase, plus a last row (kept at 0) for phases training never saw
        self.cycle = nn.Parameter(torch.zeros(phases + 1, n_targets)) if phases else None

    def init_linear(self, weight: Tensor, bias: Tensor, cycle: Tensor | None = None,
                    exo: Tensor | None = None) -> None:
        """Start the linear path at the closed-form solution: weight [H, L], bias [H], cycle [phases + 1, C],
        exo [C, E*(L+H) + 1, H]."""
        with torch.no_grad():
            if cycle is not None:
                self.cycle.copy_(cycle)
            if exo is not None:
                self.exo_linear.copy_(exo)
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
            # the transformer's correction starts at zero, so step 0 forecasts exactly like the closed form
            self.project.weight.zero_()
            self.project.bias.zero_()

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        x = batch["x"]                                   # [B, L, C]
        b, _, c = x.shape
        if self.cycle is not None:
            cyc = self.cycle[batch["phase"]]             # [B, L+H, C]: each step's calendar phase
            x = x - cyc[:, :self.lookback]
        mu = x.mean(1, keepdim=True)
        sd = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
        xn = (x - mu) / sd                               # RevIN: the transformer reads normalized windows
        out = self.correction(xn, batch) if self.transformer_on else x.new_zeros(b, self.horizon, c)
        # the linear path, in the units it was fitted in; the correction is in per-window units
        lin = self.linear((xn if self.linear_norm == "window" else x).transpose(1, 2)).transpose(1, 2)
        if self.exo_linear is not None:
            z = batch["exo"].flatten(1)
            z = torch.cat([z, z.new_ones(b, 1)], 1)
            lin = lin + torch.einsum("bf,cfh->bhc", z, self.exo_linear)
        out = (out + lin) * sd + mu if self.linear_norm == "window" else out * sd + lin
        if self.cycle is not None:
            out = out + cyc[:, self.lookback:]
        return out

    def correction(self, xn: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """The transformer branch: variate (+ exogenous) tokens -> encoder -> [B, H, C] per-window units."""
        b, _, c = xn.shape
        series = xn.transpose(1, 2)                     # [B, C, L]
        tokens = self.embed(torch.cat([series, batch["x_mask"].transpose(1, 2)], -1) if self.mask_input else series)
        if self.temporal is not None:
            tokens = self.temporal(series.reshape(b * c, -1), tokens.reshape(b * c, -1)).reshape(b, c, -1)
        if self.exo_embed is not None:
            tokens = torch.cat([tokens, self.exo_embed(batch["exo"].transpose(1, 2))], 1)
        tokens = self.drop(tokens + self.variate)
        n = tokens.shape[1]
        h = self.encoder(tokens.reshape(b * n, -1), uniform_cu_seqlens(b, n, xn.device), n).reshape(b, n, -1)
        h = h[:, :c]
        if self.out_gate is not None:
            g = torch.sigmoid(self.out_gate(torch.cat([h, tokens[:, :c]], -1)))
            h = g * h + (1 - g) * tokens[:, :c]
        return self.project(h).transpose(1, 2)


def forecast_loss(out: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
    """MSE on observed targets (a mask marks user-allowed missing values)."""
    err = (out.float() - batch["y"]) ** 2
    if "y_mask" in batch:
        m = batch["y_mask"]
        return (err * m).sum() / m.sum().clamp_min(1)
    return err.mean()
