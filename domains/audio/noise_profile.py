"""A recording's noise profile: per frequency, low quantiles of its frame powers over the whole file.

This is the batch form of minimum statistics that the Wiener and spectral-subtraction baselines use (their
`percentile` setting), given to the enhancer as input: its attention sees a bounded window (a few hundred ms),
so without it the model cannot know the file's noise floor, which the classical filters estimate from every frame.

The quantiles come from a histogram of log10 frame power per frequency bin, so a recording streamed in blocks
(memory flat in its length) gives exactly the profile of the whole file: the frames are the model's STFT frames
(centred, zero padding at the ends, Hann window), computed block by block, and counts add up exactly.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

QUANTILES = (0.1, 0.3, 0.5)     # the span the baselines' validation-chosen percentiles cover (15-50)
LOG_LO, LOG_HI, LOG_STEP = -14.0, 6.0, 0.02   # log10 power range of unit-RMS input (clipped into it)
N_BINS = int(round((LOG_HI - LOG_LO) / LOG_STEP))
BLOCK_FRAMES = 2048             # frames per block of the streaming pass (memory: block x bins floats)


def frame_count(total: int, hop: int) -> int:
    return total // hop + 1     # torch.stft / librosa with center=True


def _frame_power(segment: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """[ch, n] (already holding whole frames, padded by the caller) -> power [ch, F, frames]: librosa's STFT
    without centring, the same frames and periodic Hann window the model's centred STFT has."""
    import librosa
    return np.abs(librosa.stft(segment, n_fft=n_fft, hop_length=hop, window="hann", center=False)) ** 2


def histogram(read: Callable[[int, int], np.ndarray], total: int, n_fft: int, hop: int, gain: float = 1.0,
              block_frames: int = BLOCK_FRAMES) -> np.ndarray:
    """Counts [ch, F, N_BINS] of log10 frame power of samples [0, total) x gain; read(a, b) -> [b - a, ch]."""
    counts, half = None, n_fft // 2
    n_frames = frame_count(total, hop)
    for first in range(0, n_frames, block_frames):
        last = min(n_frames, first + block_frames)
        lo, hi = first * hop - half, (last - 1) * hop - half + n_fft     # samples of frames [first, last)
        x = np.asarray(read(max(0, lo), min(total, hi)), np.float64).T * gain   # [ch, n]
        segment = np.pad(x, ((0, 0), (max(0, -lo), max(0, hi - total))))
        power = _frame_power(segment, n_fft, hop)
        idx = np.clip(((np.log10(power + 1e-30) - LOG_LO) / LOG_STEP).astype(np.int64), 0, N_BINS - 1)
        if counts is None:
            counts = np.zeros((power.shape[0], power.shape[1], N_BINS), np.int64)
        flat = (np.arange(power.shape[0] * power.shape[1])[:, None] * N_BINS
                + idx.reshape(-1, idx.shape[-1])).ravel()
        counts += np.bincount(flat, minlength=counts.size).reshape(counts.shape)
    return counts


def quantiles(counts: np.ndarray, qs: tuple[float, ...] = QUANTILES) -> np.ndarray:
    """[ch, F, N_BINS] counts -> power [ch, len(qs), F] at the centre of the bin holding each quantile."""
    cum = np.cumsum(counts, axis=-1)
    need = np.asarray(qs)[None, :, None] * cum[:, None, :, -1]               # [ch, Q, F]
    idx = (cum[:, None, :, :] < np.maximum(need, 1)[..., None]).sum(-1)     # first bin reaching the quantile
    return (10.0 ** (LOG_LO + (np.minimum(idx, N_BINS - 1) + 0.5) * LOG_STEP)).astype(np.float32)


def profile(read: Callable[[int, int], np.ndarray], total: int, n_fft: int, hop: int,
            gain: float = 1.0) -> np.ndarray:
    """The noise profile [ch, len(QUANTILES), F] (power at the model's input level) of a streamed recording."""
    return quantiles(histogram(read, total, n_fft, hop, gain))


def of_waves(waves: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """[B, n] waves (already at the model's input level) -> profiles [B, len(QUANTILES), F]."""
    x = np.asarray(waves)
    return profile(lambda a, b: x[:, a:b].T, x.shape[1], n_fft, hop)
