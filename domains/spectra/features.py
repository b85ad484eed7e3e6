"""Featurization of the lifetime model: any acquisition setting -> the same tokens.

A histogram of G gates of width g (laser period T) and its IRF are projected onto fixed time bins in
nanoseconds relative to the IRF peak t_ref: one bin for everything before -0.4 ns (background and the tail
of earlier pulses), 0.05 ns bins over the rise and the first 0.8 ns (short lifetimes live there), then bins
widening geometrically to `END_NS`. A gate that straddles bins is split by overlap, so 48.9 ps and 97 ps
gates land on the same axis. A token is a patch of bins: sqrt(histogram fraction), sqrt(IRF fraction) and
the bins' coverage (the share of each bin inside the measured window and before the laser period ends: the
model sees where there can be no photons). Per-pixel scalars (log photons, decay delay and spread, IRF
offset and width, the IRF-calibrated phasor at the first two harmonics of the laser frequency) and the
setting's own (gate width, period, gates, window after the peak, t_ref) are embedded once and added to
every token. All by matrix products over a batch: no per-pixel Python.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

PRE_NS, FINE_NS, FINE_END_NS, END_NS = -0.4, 0.05, 0.8, 64.0
HARMONICS = (1, 2)       # IRF-calibrated phasors at these multiples of the laser frequency
N_SCALARS = 10 + 2 * len(HARMONICS)


def bin_edges(n_bins: int = 64) -> list[float]:
    """Bin edges in ns from the IRF peak; the first edge stands for minus infinity."""
    fine = np.round(np.arange(PRE_NS, FINE_END_NS + 1e-9, FINE_NS), 6)
    rest = n_bins - len(fine)          # bins after the fine ones (the first bin is the pre-pulse one)
    if rest < 4:
        raise ValueError(f"lifetime.bins={n_bins} is too few: need at least {len(fine) + 4}")
    late = np.geomspace(FINE_END_NS, END_NS, rest + 1)[1:]
    return [-1e9, *fine.tolist(), *late.tolist()]


def peak_time(irf: np.ndarray | torch.Tensor, gate_ns: float) -> float:
    """t_ref: the median IRF peak of a batch (ns from the window start), at the peak gate's centre."""
    peaks = torch.as_tensor(irf).argmax(-1).reshape(-1).float()
    return (float(peaks.median()) + 0.5) * gate_ns


def projection(gates: int, gate_ns: float, t_ref: float, edges, period_ns: float | None = None) -> np.ndarray:
    """[G, bins + 3 (+ 2 per harmonic)]: the share of each gate in each bin, then 1, t and t^2 (t = gate
    centre - t_ref, ns), then cos and sin of each harmonic of the laser frequency at t (phasor sums)."""
    e = np.asarray(edges, float)
    lo = np.arange(gates) * gate_ns - t_ref
    overlap = np.clip(np.minimum(lo[:, None] + gate_ns, e[None, 1:]) - np.maximum(lo[:, None], e[None, :-1]), 0, None)
    t = lo + gate_ns / 2
    cols = [overlap / gate_ns, np.ones((gates, 1)), t[:, None], t[:, None] ** 2]
    if period_ns is not None:
        for h in HARMONICS:
            w = 2 * np.pi * h * t / period_ns
            cols += [np.cos(w)[:, None], np.sin(w)[:, None]]
    return np.concatenate(cols, 1).astype(np.float32)


def coverage(gates: int, gate_ns: float, period_ns: float, t_ref: float, edges) -> np.ndarray:
    """Share of each bin inside the measured window and before the laser period ends."""
    e = np.asarray(edges, float)
    start, end = -t_ref, min(gates * gate_ns, period_ns) - t_ref
    lo, hi = np.maximum(e[:-1], start), np.minimum(e[1:], end)
    width = np.where(e[:-1] < -1e8, e[1] - start, e[1:] - e[:-1])          # the pre-pulse bin: from the start
    return np.clip((hi - lo) / np.maximum(width, 1e-9), 0, 1).astype(np.float32)


def instrument_scalars(gates: int, gate_ns: float, period_ns: float, t_ref: float) -> np.ndarray:
    after = max(min(gates * gate_ns, period_ns) - t_ref, 1e-3)
    return np.array([np.log(gate_ns / 0.1), np.log(period_ns / 25), np.log(gates / 256), np.log(after / 10),
                     t_ref - 1.5], np.float32)


class Featurizer:
    """(counts [B, G], irf [B, G]) of one acquisition setting -> (tokens [B, L, 3 * patch], scalars [B, 10])."""

    def __init__(self, meta: Mapping, gates: int, gate_ns: float, period_ns: float, t_ref: float):
        self.edges = meta["bin_edges"]
        self.patch = int(meta["patch"])
        self.n_bins = len(self.edges) - 1
        self.n_tokens = self.n_bins // self.patch
        self.proj = torch.from_numpy(projection(gates, gate_ns, t_ref, self.edges, period_ns))
        self.cover = torch.from_numpy(coverage(gates, gate_ns, period_ns, t_ref, self.edges)).view(
            1, self.n_tokens, self.patch)
        self.inst = torch.from_numpy(instrument_scalars(gates, gate_ns, period_ns, t_ref))

    def __call__(self, counts: torch.Tensor, irf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # always float32, also under `predict --precision bf16`: photon totals and moments need more than
        # bf16's 3 significant digits (and complex tensors have no bf16); only the model runs in bf16
        with torch.autocast(counts.device.type, enabled=False):
            return self._features(counts.float(), irf.float())

    def _features(self, counts: torch.Tensor, irf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, p, c = counts.shape[0], self.n_tokens, self.patch, self.n_bins
        hc, hi = counts @ self.proj, irf @ self.proj
        total, norm = hc[:, c:c + 1].clamp_min(1.0), hi[:, c:c + 1].clamp_min(1e-12)
        m1, i1 = hc[:, c + 1:c + 2] / total, hi[:, c + 1:c + 2] / norm
        sd = (hc[:, c + 2:c + 3] / total - m1 * m1).clamp_min(0).sqrt()
        isd = (hi[:, c + 2:c + 3] / norm - i1 * i1).clamp_min(0).sqrt()
        # IRF-calibrated phasors (pixel phasor / IRF phasor): for a periodic decay, 1 / (1 + i h w tau) per
        # exponential, so they carry the lifetimes almost directly (a cheap, strong summary)
        k = c + 3
        ph = torch.complex(hc[:, k::2], hc[:, k + 1::2]) / total
        pi = torch.complex(hi[:, k::2], hi[:, k + 1::2]) / norm
        cal = ph / torch.where(pi.abs() > 1e-6, pi, torch.ones_like(pi))
        scalars = torch.cat([torch.log10(total) - 2.5, (m1 - i1) / 3 - 0.5, sd / 3 - 0.5, i1 * 5, isd * 5 - 0.5,
                             cal.real.clamp(-2, 2), cal.imag.clamp(-2, 2), self.inst.expand(b, -1)], 1)
        scale = c / 8
        # clamp: IRFs (users', estimated ones) may carry round-off negatives; sqrt would give NaN
        hist = (hc[:, : n * p] * (scale / total)).clamp_min_(0).sqrt_().view(b, n, p)
        irf_b = (hi[:, : n * p] * (scale / norm)).clamp_min_(0).sqrt_().view(b, n, p)
        return torch.cat([hist, irf_b, self.cover.expand(b, -1, -1)], -1), scalars
