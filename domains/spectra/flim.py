"""Fluorescence-lifetime (TCSPC) simulator: bi-exponential decays convolved with a per-pixel instrument
response function (IRF), Poisson photon counts. Seeded and vectorized (numpy, FFT convolution).

Per pixel (all parameters documented in domains/spectra/config.yaml, section `lifetime`):

    decay(t) = A exp(-t / tau1) + (1 - A) exp(-t / tau2),  t >= 0 (time from the IRF's centre)
    rate_k   = (IRF * decay)_k integrated over gate k, normalized to sum 1 over the window
    counts_k ~ Poisson(photons * rate_k),  photons ~ log-uniform in `photons`

Two published settings (FLI-Net, Smith et al. 2019 PNAS; MFliNet, 2024) are presets: 256 gates of 48.9 ps
with tau1 0.2-0.5 ns, tau2 2-3 ns, or 176 gates (same width) with tau1 0.2-0.8, tau2 0.8-1.5 ns. A is
uniform in [0, 1]. The IRF comes from a family of shapes, each with a random width (FWHM) and a
per-pixel shift (uniform jitter of `irf_jitter_gates`), sampled on a 1/8-gate grid and binned to gates:

    gaussian    Gaussian
    exgauss     Gaussian convolved with an exponential tail (detector diffusion tail, 20-120 ps)
    reflection  Gaussian plus a delayed echo (5-20 % at +0.3-0.8 ns, an optics reflection)
    gamma_wide  (only for the out-of-distribution test) a gamma-shaped IRF, FWHM 250-450 ps, heavy tail

The decay is not periodic (no pile-up from the previous laser pulse) and has no background, as in the
published training data; `background` adds a uniform fraction of dark counts when set.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PRESETS = {
    "fli-net": {"gates": 256, "gate_ps": 48.9, "tau1": (0.2, 0.5), "tau2": (2.0, 3.0)},
    "mfli-net": {"gates": 176, "gate_ps": 48.9, "tau1": (0.2, 0.8), "tau2": (0.8, 1.5)},
}
TRAIN_SHAPES = ("gaussian", "exgauss", "reflection")
ALL_SHAPES = (*TRAIN_SHAPES, "gamma_wide")
IRF_SPAN_NS = 2.5  # the IRF window simulated after the latest centre
OVERSAMPLE = 8  # IRF evaluated on 1/8-gate steps before binning, so sub-gate shifts are represented


@dataclass(frozen=True)
class FlimSetting:
    gates: int = 256
    gate_ps: float = 48.9
    tau1: tuple[float, float] = (0.2, 0.5)
    tau2: tuple[float, float] = (2.0, 3.0)
    photons: tuple[float, float] = (100.0, 1000.0)
    irf_center_gates: float = 20.0           # where the IRF peaks before jitter (the decay starts there)
    irf_jitter_gates: float = 3.0            # uniform per-pixel shift in [0, jitter] gates
    irf_fwhm_ps: tuple[float, float] = (80.0, 200.0)
    irf_shapes: tuple[str, ...] = field(default=TRAIN_SHAPES)
    background: float = 0.0                  # max fraction of uniform background counts (0 = none)

    @property
    def gate_ns(self) -> float:
        return self.gate_ps / 1000.0

    def midpoint(self) -> dict[str, float]:
        """The centre of the parameter ranges (the 'predict the middle' baseline)."""
        t1, t2 = float(np.mean(self.tau1)), float(np.mean(self.tau2))
        return {"tau1": t1, "tau2": t2, "a": 0.5, "tau_m": 0.5 * t1 + 0.5 * t2}


def setting_from_config(section: dict, **changes) -> FlimSetting:
    preset = dict(PRESETS[section["preset"]])
    for key in ("gates", "gate_ps", "tau1", "tau2"):
        if section.get(key) is not None:
            preset[key] = section[key]
    values = {**preset, "photons": section["photons"], "irf_center_gates": section["irf_center_gates"],
              "irf_jitter_gates": section["irf_jitter_gates"], "irf_fwhm_ps": section["irf_fwhm_ps"],
              "irf_shapes": section["irf_shapes"], "background": section["background"], **changes}
    return FlimSetting(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _irf_fine(shape: np.ndarray, center: np.ndarray, fwhm: np.ndarray, rng: np.random.Generator,
              n_fine: int, step: float) -> np.ndarray:
    """IRFs on the fine grid (time in ns), one row per pixel, peak near `center`."""
    t = np.arange(n_fine) * step
    n = len(shape)
    sigma = fwhm / 2.3548
    dt = t[None, :] - center[:, None]
    out = np.exp(-0.5 * (dt / sigma[:, None]) ** 2)
    tail = shape == "exgauss"
    if tail.any():  # exponential tail, then re-centre the peak by the tail's mean delay
        tau_tail = rng.uniform(0.02, 0.12, n)
        kernel = np.exp(-t[None, :] / tau_tail[:, None])
        conv = np.fft.irfft(np.fft.rfft(out, 2 * n_fine) * np.fft.rfft(kernel, 2 * n_fine), 2 * n_fine)[:, :n_fine]
        shift = np.argmax(conv, 1) - np.argmax(out, 1)
        rows = np.flatnonzero(tail)
        for r in rows:  # small loop over rows only to undo the peak shift (np.roll per row)
            conv[r] = np.roll(conv[r], -shift[r])
        out[tail] = conv[tail]
    echo = shape == "reflection"
    if echo.any():
        delay = rng.uniform(0.3, 0.8, n)[:, None]
        strength = rng.uniform(0.05, 0.20, n)[:, None]
        second = strength * np.exp(-0.5 * ((dt - delay) / sigma[:, None]) ** 2)
        out[echo] = (out + second)[echo]
    wide = shape == "gamma_wide"
    if wide.any():  # gamma(k) density with mode at the centre; k sets skew, the scale sets the width
        k = rng.uniform(2.5, 5.0, n)[:, None]
        width = rng.uniform(0.25, 0.45, n)[:, None]
        theta = width / (2.3548 * np.sqrt(k))
        x = np.clip(dt / theta + (k - 1), 1e-9, None)
        dens = np.exp((k - 1) * np.log(x) - x - ((k - 1) * np.log(k - 1) - (k - 1)))
        out[wide] = np.where(dt / theta + (k - 1) > 0, dens, 0.0)[wide]
    return out


CHUNK = 4096  # pixels simulated at once (bounds the FFT memory); fixed so a seed always gives the same data


def simulate(setting: FlimSetting, n: int, seed: int, shapes: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """n pixels: counts [n, G] (int32), irf [n, G] (float32, sums to 1), tau1, tau2, a, tau_m, photons, shape."""
    shapes = tuple(shapes or setting.irf_shapes)
    unknown = set(shapes) - set(ALL_SHAPES)
    if unknown:
        raise ValueError(f"unknown IRF shape(s) {sorted(unknown)}; known: {ALL_SHAPES}")
    children = np.random.SeedSequence(seed).spawn(max(1, -(-n // CHUNK)))
    parts = [_simulate_chunk(setting, min(CHUNK, n - i * CHUNK), np.random.default_rng(c), shapes)
             for i, c in enumerate(children)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _simulate_chunk(setting: FlimSetting, n: int, rng: np.random.Generator, shapes: tuple[str, ...]) -> dict:
    g, gate = setting.gates, setting.gate_ns
    tau1 = rng.uniform(*setting.tau1, n)
    tau2 = rng.uniform(*setting.tau2, n)
    a = rng.uniform(0.0, 1.0, n)
    lo, hi = np.log(setting.photons[0]), np.log(setting.photons[1])
    photons = np.exp(rng.uniform(lo, hi, n))
    shape = np.asarray(shapes)[rng.integers(0, len(shapes), n)]
    center = (setting.irf_center_gates + rng.uniform(0, setting.irf_jitter_gates, n)) * gate
    fwhm = rng.uniform(*setting.irf_fwhm_ps, n) / 1000.0
    step = gate / OVERSAMPLE
    # every IRF shape has decayed to ~0 within IRF_SPAN_NS of its centre: evaluate only that window
    window = min(g, int(np.ceil(setting.irf_center_gates + setting.irf_jitter_gates + IRF_SPAN_NS / gate)))
    fine = _irf_fine(shape, center, fwhm, rng, window * OVERSAMPLE, step)
    irf = np.zeros((n, g))
    # clip: the FFT convolution of the exgauss tail leaves round-off negatives (~1e-17) where the IRF is 0
    irf[:, :window] = np.clip(fine.reshape(n, window, OVERSAMPLE).sum(-1), 0.0, None)
    irf /= irf.sum(1, keepdims=True)
    rate = convolve_decay(irf, tau1, tau2, a, gate)
    if setting.background > 0:
        bg = rng.uniform(0, setting.background, n)[:, None]
        rate = (1 - bg) * rate + bg / g
    counts = rng.poisson(photons[:, None] * rate)
    return {"counts": counts.astype(np.int32), "irf": irf.astype(np.float32), "tau1": tau1, "tau2": tau2,
            "a": a, "tau_m": a * tau1 + (1 - a) * tau2, "photons": photons, "shape": shape}


def gate_integrated_decay(tau: np.ndarray, gates: int, gate: float) -> np.ndarray:
    """exp(-t/tau) integrated over each gate [k, k+1) * gate, for t from 0: [n, G]."""
    edges = np.arange(gates + 1) * gate
    e = np.exp(-edges[None, :] / tau[:, None])
    return tau[:, None] * (e[:, :-1] - e[:, 1:])


def convolve_decay(irf: np.ndarray, tau1, tau2, a, gate: float) -> np.ndarray:
    """Normalized expected counts [n, G]: the IRF (a distribution over gates, already at its position in
    the window, so it carries time zero) convolved with the gate-integrated bi-exponential decay."""
    n, g = irf.shape
    tau1, tau2, a = (np.broadcast_to(np.asarray(x, float), (n,)) for x in (tau1, tau2, a))
    kernel = a[:, None] * gate_integrated_decay(tau1, g, gate) + (1 - a[:, None]) * gate_integrated_decay(tau2, g, gate)
    size = 2 * g
    rate = np.fft.irfft(np.fft.rfft(irf, size) * np.fft.rfft(kernel, size), size)[:, :g]
    rate = np.clip(rate, 0.0, None)
    return rate / rate.sum(1, keepdims=True)
