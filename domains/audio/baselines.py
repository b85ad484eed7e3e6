"""Classical enhancement baselines on librosa's STFT, each run at its best: its settings are chosen on the
validation mixtures (mean PESQ over the SNR buckets; one setting for every SNR, since a user does not know the
SNR of a recording), never on test.

- Wiener filter with the decision-directed a-priori SNR (Ephraim & Malah 1984; Scalart & Filho 1996).
- Power spectral subtraction with over-subtraction and a spectral floor (Berouti et al. 1979).
- `noisereduce` (spectral gating, stationary or not).
The noise power is estimated per frequency from the quietest frames of the recording (a low percentile of the
frame powers: a batch form of minimum statistics), so no method is told where the speech is.
"""
from __future__ import annotations

import itertools
from typing import Callable

import numpy as np

GRIDS: dict[str, dict[str, list]] = {
    # validation picked percentile 30 and over-subtraction 6 at the old grids' edges: the grids now reach past them
    "wiener": {"alpha": [0.96, 0.98], "floor_db": [-30.0, -20.0, -12.0], "percentile": [15.0, 30.0, 50.0]},
    "spectral-subtraction": {"oversub": [2.0, 4.0, 6.0, 9.0], "floor": [0.002, 0.02],
                             "percentile": [15.0, 30.0, 50.0]},
    "noisereduce": {"stationary": [True, False], "prop_decrease": [0.7, 1.0]},
}


def stft_setup(sample_rate: int) -> dict:
    """32 ms Hann windows, 8 ms hop: the same frames the model uses."""
    n_fft = int(round(0.032 * sample_rate))
    return {"n_fft": n_fft, "hop_length": n_fft // 4, "window": "hann", "center": True}


def _noise_psd(power: np.ndarray, percentile: float) -> np.ndarray:
    return np.percentile(power, percentile, axis=1, keepdims=True) + 1e-12


def wiener(noisy: np.ndarray, sample_rate: int, alpha: float = 0.98, floor_db: float = -15.0,
           percentile: float = 10.0) -> np.ndarray:
    import librosa
    st = stft_setup(sample_rate)
    spec = librosa.stft(noisy, **st)
    power = np.abs(spec) ** 2
    noise = _noise_psd(power, percentile)
    post = power / noise                                   # a-posteriori SNR
    floor = 10 ** (floor_db / 20)
    gain = np.empty_like(power)
    prev = np.ones(power.shape[0])                         # |S_hat|^2 / noise of the previous frame
    for t in range(power.shape[1]):
        prior = alpha * prev + (1 - alpha) * np.maximum(post[:, t] - 1.0, 0.0)
        g = np.maximum(prior / (1.0 + prior), floor)
        gain[:, t] = g
        prev = g ** 2 * post[:, t]
    return librosa.istft(gain * spec, length=len(noisy), **{k: v for k, v in st.items() if k != "n_fft"},
                         n_fft=st["n_fft"]).astype(np.float32)


def spectral_subtraction(noisy: np.ndarray, sample_rate: int, oversub: float = 2.0, floor: float = 0.02,
                         percentile: float = 10.0) -> np.ndarray:
    import librosa
    st = stft_setup(sample_rate)
    spec = librosa.stft(noisy, **st)
    power = np.abs(spec) ** 2
    clean = np.maximum(power - oversub * _noise_psd(power, percentile), floor * power)
    gain = np.sqrt(clean / (power + 1e-12))
    return librosa.istft(gain * spec, length=len(noisy), hop_length=st["hop_length"], n_fft=st["n_fft"],
                         window="hann", center=True).astype(np.float32)


def noisereduce_baseline(noisy: np.ndarray, sample_rate: int, stationary: bool = False,
                         prop_decrease: float = 1.0) -> np.ndarray:
    import noisereduce as nr
    st = stft_setup(sample_rate)
    out = nr.reduce_noise(y=noisy, sr=sample_rate, stationary=stationary, prop_decrease=prop_decrease,
                          n_fft=st["n_fft"], hop_length=st["hop_length"], n_jobs=1)
    return np.asarray(out, np.float32)[:len(noisy)]


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "wiener": wiener, "spectral-subtraction": spectral_subtraction, "noisereduce": noisereduce_baseline}


def settings_grid(method: str) -> list[dict]:
    grid = GRIDS[method]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def choose_settings(method: str, noisy: list[np.ndarray], clean: list[np.ndarray], sample_rate: int) -> dict:
    """The grid point with the best mean validation PESQ (ties: the first in grid order)."""
    from domains.audio.metrics import pesq_score
    best, best_score = None, -np.inf
    for params in settings_grid(method):
        scores = [pesq_score(c, METHODS[method](x, sample_rate, **params), sample_rate) for x, c in zip(noisy, clean)]
        score = float(np.nanmean(scores))
        if score > best_score:
            best, best_score = params, score
    return {**best, "val_pesq": best_score}


def enhance(method: str, noisy: np.ndarray, sample_rate: int, settings: dict) -> np.ndarray:
    return METHODS[method](noisy, sample_rate, **{k: v for k, v in settings.items() if k != "val_pesq"})
