"""MP-SENet's training objective (without its metric discriminator): compressed-magnitude, complex-spectrum,
anti-wrapping phase, waveform and STFT-consistency losses, returned with their components so the trainer logs
each one.

Anti-wrapping (Ai & Ling 2023): a phase error of 2*pi*k is no error, so every phase difference goes through
f_aw(x) = |x - 2*pi*round(x / 2*pi)| before averaging: the instantaneous phase, the group delay (difference
along frequency) and the instantaneous angular frequency (difference along time).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import Tensor

from domains.audio import spectral as S

WEIGHTS = {"magnitude": 0.9, "complex": 0.1, "phase": 0.3, "waveform": 0.2, "consistency": 0.1}  # MP-SENet's


def anti_wrap(x: Tensor) -> Tensor:
    return torch.abs(x - 2 * math.pi * torch.round(x / (2 * math.pi)))


def phase_losses(est: Tensor, ref: Tensor) -> dict[str, Tensor]:
    """est/ref phase [B, F, T] -> instantaneous phase, group delay and instantaneous frequency losses."""
    d = est - ref
    return {"ip": anti_wrap(d).mean(),
            "gd": anti_wrap(torch.diff(est, dim=1) - torch.diff(ref, dim=1)).mean(),
            "iaf": anti_wrap(torch.diff(est, dim=2) - torch.diff(ref, dim=2)).mean()}


def enhancement_loss(out: Mapping[str, Tensor], batch: Mapping[str, Any], n_fft: int, hop: int,
                     weights: Mapping[str, float] = WEIGHTS) -> tuple[Tensor, dict[str, float]]:
    clean = batch["clean"]
    ref_mag, ref_phase = S.compress(S.stft(clean, n_fft, hop))
    ref_com = torch.stack([ref_mag * torch.cos(ref_phase), ref_mag * torch.sin(ref_phase)], -1)
    mag, phase, com, wave = out["mag"].float(), out["phase"].float(), out["com"].float(), out["wave"].float()
    ph = phase_losses(phase, ref_phase)
    # consistency: the spectrum of the enhanced waveform should be the spectrum the model predicted
    re_mag, re_phase = S.compress(S.stft(wave, n_fft, hop))
    re_com = torch.stack([re_mag * torch.cos(re_phase), re_mag * torch.sin(re_phase)], -1)
    parts = {"magnitude": torch.mean((mag - ref_mag) ** 2),
             "complex": 2 * torch.mean((com - ref_com) ** 2),
             "phase": ph["ip"] + ph["gd"] + ph["iaf"],
             "waveform": torch.mean(torch.abs(wave - clean)),
             "consistency": 2 * torch.mean((com - re_com) ** 2)}
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
