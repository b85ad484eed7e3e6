"""The model's differentiable STFT front and back end, defined to match librosa's.

librosa computes every spectrum outside the network (baselines, features, tests); training needs gradients
through the inverse STFT (the waveform loss) and the consistency loss, so the model uses torch.stft with the
same frames: Hann window of n_fft, centred frames with constant padding (librosa's default pad_mode),
hop n_fft/4. tests/test_audio_enhance.py checks that both give the same spectrum and that analysis ->
synthesis returns the input.
"""
from __future__ import annotations

import torch
from torch import Tensor

COMPRESS = 0.3   # magnitude compression exponent (MP-SENet; Braun & Tashev's power-law compression)


def frame_setup(sample_rate: int) -> dict:
    """32 ms windows, 8 ms hop (the baselines use the same frames: domains.audio.baselines.stft_setup)."""
    n_fft = int(round(0.032 * sample_rate))
    return {"n_fft": n_fft, "hop": n_fft // 4}


def stft(wave: Tensor, n_fft: int, hop: int) -> Tensor:
    """[B, N] -> complex [B, F, T] (F = n_fft/2 + 1, T = N // hop + 1)."""
    window = torch.hann_window(n_fft, periodic=True, device=wave.device, dtype=wave.dtype)
    return torch.stft(wave, n_fft, hop, n_fft, window, center=True, pad_mode="constant", return_complex=True)


def istft(spec: Tensor, n_fft: int, hop: int, length: int) -> Tensor:
    window = torch.hann_window(n_fft, periodic=True, device=spec.device, dtype=spec.real.dtype)
    return torch.istft(spec, n_fft, hop, n_fft, window, center=True, length=length)


def compress(spec: Tensor, eps: float = 1e-9) -> tuple[Tensor, Tensor]:
    """complex [B, F, T] -> (compressed magnitude |X|^0.3, phase), both [B, F, T]."""
    mag = (spec.abs() + eps) ** COMPRESS
    return mag, torch.angle(spec)


def decompress(mag_c: Tensor, phase: Tensor) -> Tensor:
    """(compressed magnitude, phase) -> complex spectrum."""
    mag = mag_c.clamp_min(0) ** (1.0 / COMPRESS)
    return torch.polar(mag, phase)


def identity(wave: Tensor, n_fft: int, hop: int) -> Tensor:
    """The model's path with the network replaced by the identity (mask 1, noisy phase): STFT, compression,
    decompression, inverse STFT. Must return the input."""
    mag_c, phase = compress(stft(wave, n_fft, hop), eps=0.0)
    return istft(decompress(mag_c, phase), n_fft, hop, wave.shape[-1])
