"""Is a pixel's decay one the lifetime model was trained for? (phasor test, thresholds set on simulated
calibration pixels, never on test data)

The phasor at the laser frequency (sum of counts times exp(2 pi i t / T), over the total) is linear in the
expected counts, so every decay the training prior can produce -- any mixture of exponentials with lifetimes
in the prior's ranges, convolved with this IRF, earlier pulses and the window included (`flim.components`) --
has its expected phasor inside the convex hull of the curve P(tau) traced by single exponentials over those
ranges (both arcs when tau1 and tau2 have separate ranges). A pixel's distance d outside that hull, over its
noise -- the phasor's Poisson standard deviation from its counts, and a systematic term for the IRF being
estimated from the data -- is the statistic z = d / sqrt(sd^2 + sys^2).

`calibrate_threshold` (run by `train`, stored in the model's calibration.json) simulates image-like blocks
from the training prior (and instrument family): pixels sharing one IRF that is then estimated from their
summed counts, as prediction does. sys is the 95th percentile of d over its pixels with >= 5000 photons
(there the Poisson term is small, so d measures the IRF estimate's error); the z threshold is the
(1 - `lifetime.out_of_range_rate`) quantile of z, so that share of in-distribution pixels is flagged. A
flagged pixel gets no estimate (NaN) and a status naming why:

* ``lifetime_out_of_range``   the nearest single-exponential phasor (0.01-100 ns) lies outside the prior's range
* ``mono_exponential``        the phasor sits on the single-exponential curve, inside the range, but the model
                              was trained on bi-exponential decays only (fixed presets)
* ``outside_training_prior``  anything else outside the hull (e.g. a background the model never saw)

Before any of these: ``too_few_photons`` (under `lifetime.min_photons`) and ``missing_or_non_finite_count`` (a
NaN, infinite or blank count: a masked pixel, predicted under --on-invalid mark/skip only).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull

from domains.spectra.flim import FlimSetting, components
from domains.spectra.readers import MISSING, estimate_irf

N_ARC = 96
WIDE = (0.01, 100.0)         # ns: the single-exponential curve searched for the status reason
MONO_Z = 2.0                 # a phasor this close (in its noise sd) to the single-exponential curve is "mono"
STATUS_CODES = {"ok": 0, "too_few_photons": 1, "lifetime_out_of_range": 2, "mono_exponential": 3,
                "outside_training_prior": 4, MISSING: 5}


def _basis(setting: FlimSetting) -> np.ndarray:
    t = (np.arange(setting.gates) + 0.5) * setting.gate_ns
    return np.exp(2j * np.pi * t / setting.period_ns)


def phasors(counts: np.ndarray, setting: FlimSetting) -> tuple[np.ndarray, np.ndarray]:
    """Complex phasors [n] and their Poisson standard deviation [n] (per axis, averaged)."""
    y = np.asarray(counts, float)
    b = _basis(setting)
    total = np.maximum(y.sum(1), 1.0)
    p = (y @ b) / total
    second = (y @ (b.real ** 2)) / total - p.real ** 2, (y @ (b.imag ** 2)) / total - p.imag ** 2
    return p, np.sqrt(np.maximum((second[0] + second[1]) / 2, 1e-12) / total)


def _arc(irf: np.ndarray, taus: np.ndarray, setting: FlimSetting) -> np.ndarray:
    """Expected phasors [n, m] of single exponentials with lifetimes taus [m], for IRFs [n, G]."""
    c = components(np.asarray(irf, float), np.broadcast_to(taus, (len(irf), len(taus))), setting.gate_ns,
                   setting.period_ns)
    return (c @ _basis(setting)) / np.maximum(c.sum(-1), 1e-300)


def prior_taus(setting: FlimSetting) -> np.ndarray:
    return np.unique(np.concatenate([np.geomspace(*setting.tau1, N_ARC // 2), np.geomspace(*setting.tau2, N_ARC // 2)]))


def _outside(p: np.ndarray, hull: np.ndarray) -> float | np.ndarray:
    """Distance of points p [k] (complex) outside the convex polygon with vertices hull [V] (complex)."""
    a, b = hull, np.roll(hull, -1)
    e = b - a
    rel = p[:, None] - a[None]
    cross = e.real * rel.imag - e.imag * rel.real
    inside = (cross >= 0).all(1) if _ccw(hull) else (cross <= 0).all(1)
    t = np.clip((rel.real * e.real + rel.imag * e.imag) / np.maximum(np.abs(e) ** 2, 1e-300), 0, 1)
    dist = np.abs(rel - t * e[None]).min(1)
    return np.where(inside, 0.0, dist)


def _ccw(poly: np.ndarray) -> bool:
    x, y = poly.real, poly.imag
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) > 0


def _hull(points: np.ndarray) -> np.ndarray:
    xy = np.stack([points.real, points.imag], 1)
    try:
        v = ConvexHull(xy).vertices                      # counter-clockwise in 2-D
    except Exception:  # degenerate (all points on a line): the points themselves
        v = np.arange(len(points))
    return points[v]


def distances(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting, chunk: int = 256):
    """(d, sd) [n]: distance outside the prior's hull and the phasor's Poisson sd. irf: [G] or [n, G]."""
    p, sd = phasors(counts, setting)
    taus = prior_taus(setting)
    if np.ndim(irf) == 1:
        return _outside(p, _hull(_arc(irf[None], taus, setting)[0])), sd
    d = np.empty(len(p))
    for s in range(0, len(p), chunk):
        arcs = _arc(irf[s:s + chunk], taus, setting)
        d[s:s + chunk] = [_outside(p[s + i:s + i + 1], _hull(arc))[0] for i, arc in enumerate(arcs)]
    return d, sd


def z_scores(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting, systematic: float = 0.0) -> np.ndarray:
    d, sd = distances(counts, irf, setting)
    return d / np.sqrt(sd ** 2 + systematic ** 2)


def reasons(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting, flagged: np.ndarray) -> np.ndarray:
    """Status strings for flagged pixels (see the module docstring); 'ok' elsewhere. irf: [G]."""
    out = np.full(len(counts), "ok", dtype=object)
    if not flagged.any():
        return out
    p, sd = phasors(counts[flagged], setting)
    wide = np.geomspace(*WIDE, 400)
    arc = _arc(np.asarray(irf, float)[None], wide, setting)[0]
    gap = np.abs(p[:, None] - arc[None])
    nearest, dist = wide[gap.argmin(1)], gap.min(1) / sd
    lo, hi = setting.support()
    why = np.where((nearest < lo) | (nearest > hi), "lifetime_out_of_range",
                   np.where((dist < MONO_Z) & (setting.mono_fraction == 0), "mono_exponential",
                            "outside_training_prior"))
    out[np.flatnonzero(flagged)] = why
    return out


def calibration_blocks(prior: FlimSetting, family, n: int, seed: int, block: int = 64):
    """Image-like simulated blocks: (setting, counts, IRF estimated from the block's summed counts)."""
    from domains.spectra.flim import simulate
    rng = np.random.default_rng([seed, 99])
    for b in range(max(1, n // block)):
        s = prior if family is None else prior.with_(**family.draw(rng))
        one = simulate(s, 1, [seed, b, 0])["irf"][0]
        counts = simulate(s, block, [seed, b, 1], irf=one)["counts"]
        yield s, counts, estimate_irf(counts[None].astype(float))


def calibrate_threshold(prior: FlimSetting, family, n: int, rate: float, seed: int) -> dict:
    """sys and the z threshold that flags `rate` of simulated in-distribution pixels (module docstring)."""
    d, sd, photons = [], [], []
    for s, counts, irf in calibration_blocks(prior, family, n, seed):
        a, b = distances(counts, irf, s)
        d.append(a), sd.append(b), photons.append(counts.sum(1))
    d, sd, photons = np.concatenate(d), np.concatenate(sd), np.concatenate(photons)
    bright = photons >= 5000
    sys = float(np.quantile(d[bright], 0.95)) if bright.sum() >= 20 else 0.0
    z = d / np.sqrt(sd ** 2 + sys ** 2)
    return {"out_of_range_z": float(np.quantile(z, 1 - rate)), "out_of_range_sys": sys,
            "out_of_range_rate": rate, "pixels": int(len(z))}
