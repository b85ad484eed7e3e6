"""Fluorescence-lifetime (TCSPC) simulator and its forward model (numpy; `fit_fast` has the torch twin).

Per pixel (all parameters documented in domains/spectra/config.yaml, section `lifetime`):

    decay(t) = A exp(-t / tau1) + (1 - A) exp(-t / tau2)          (mono-exponential: tau1 = tau2, A = 1)
    rate_k   = sum over laser pulses n >= 0 of (IRF * decay)(t_k + n T), integrated over gate k, zero for
               gates at or after the laser period T (the TAC restarts there), normalized to sum 1
    counts_k ~ Poisson(photons * rate_k) (+ an optional uniform background fraction)

The sum over earlier pulses matters when lifetimes are not short against the period (10 ns at 80 MHz leaves
29 % of the decay for the next window); it has a closed form (`components`). The IRF is a distribution over
gates at its position in the window (it carries time zero); shapes, each gate-integrated exactly:

    gaussian    Gaussian
    exgauss     Gaussian convolved with an exponential tail (detector diffusion tail, 20-120 ps)
    reflection  Gaussian plus a delayed echo (5-20 % at +0.3-0.8 ns, an optics reflection)
    gamma_wide  (only for the out-of-distribution test) a gamma-shaped IRF, FWHM 250-450 ps, heavy tail

Lifetime prior: tau1 and tau2 uniform in their ranges (`log_tau`: log-uniform), sorted so tau1 <= tau2 when
the ranges overlap; A ~ Beta(a_beta); a `mono_fraction` of pixels is mono-exponential. Instruments: one
setting (gates, gate width, laser period, where the IRF sits) or a family of them (`InstrumentFamily`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import special, stats

TRAIN_SHAPES = ("gaussian", "exgauss", "reflection")
ALL_SHAPES = (*TRAIN_SHAPES, "gamma_wide")
IRF_SPAN_NS = 2.5   # every IRF shape has decayed to ~0 within this time after its centre
# named acquisition settings: (gates, gate width ps, laser period ns)
INSTRUMENTS = {
    "fli-net": (256, 48.9, 12.5),        # FLI-Net's simulated data (Smith et al. 2019 PNAS), 80 MHz
    "mfli-net": (176, 48.9, 12.5),       # MFliNet's setting (2024)
    "ptu": (139, 96.97, 12.817),         # the hazelnut .ptu in napari-flim-phasor-plotter (78.02 MHz sync)
    "image-40mhz": (256, 97.7, 25.0),    # a common confocal TCSPC setting: 256 x 97.7 ps at 40 MHz
}


@dataclass(frozen=True)
class FlimSetting:
    """One acquisition setting, the IRF family and the lifetime prior: everything `simulate` needs."""
    gates: int = 256
    gate_ps: float = 48.9
    period_ns: float = 12.5
    irf_center_ns: float = 1.0               # where the IRF peaks before jitter
    irf_jitter_ns: float = 0.15              # per-pixel IRF shift, uniform in [0, jitter]
    irf_fwhm_ps: tuple[float, float] = (80.0, 350.0)
    irf_shapes: tuple[str, ...] = field(default=TRAIN_SHAPES)
    tau1: tuple[float, float] = (0.1, 10.0)
    tau2: tuple[float, float] = (0.1, 10.0)
    log_tau: bool = True                     # lifetimes log-uniform (else uniform) in their ranges
    mono_fraction: float = 0.3               # share of mono-exponential pixels
    a_beta: tuple[float, float] = (1.0, 1.0)   # A ~ Beta(a, b); (1, 1) = uniform
    photons: tuple[float, float] = (100.0, 1000.0)   # log-uniform
    background: float = 0.0                  # max fraction of uniform background counts (0 = none)

    @property
    def gate_ns(self) -> float:
        return self.gate_ps / 1000.0

    @property
    def window_ns(self) -> float:
        return self.gates * self.gate_ns

    def support(self) -> tuple[float, float]:
        """The lifetime range the prior covers (ns)."""
        return min(self.tau1[0], self.tau2[0]), max(self.tau1[1], self.tau2[1])

    def with_(self, **changes) -> "FlimSetting":
        return replace(self, **{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(values: dict) -> "FlimSetting":
        names = FlimSetting.__dataclass_fields__
        return FlimSetting(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class InstrumentFamily:
    """Acquisition settings drawn per training batch: gate width and laser period log-uniform, the window a
    fraction of the period (> 1: gates after the period stay empty, as in the .ptu demo), the IRF's place."""
    gate_ps: tuple[float, float] = (25.0, 200.0)
    gates: tuple[int, int] = (64, 512)
    period_ns: tuple[float, float] = (12.5, 50.0)
    window_fraction: tuple[float, float] = (0.5, 1.1)
    irf_center_ns: tuple[float, float] = (0.5, 3.0)

    def draw(self, rng: np.random.Generator) -> dict:
        for _ in range(100):   # rejection: gate width, period and window fraction give a gate count in range
            gate = float(np.exp(rng.uniform(*np.log(self.gate_ps))))
            period = float(np.exp(rng.uniform(*np.log(self.period_ns))))
            gates = round(rng.uniform(*self.window_fraction) * period * 1000 / gate)
            if self.gates[0] <= gates <= self.gates[1]:
                break
        gates = int(np.clip(gates, *self.gates))
        centre = min(float(rng.uniform(*self.irf_center_ns)), 0.3 * gates * gate / 1000)
        return {"gates": gates, "gate_ps": gate, "period_ns": period, "irf_center_ns": centre}


def sample_prior(s: FlimSetting, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    draw = (lambda r: np.exp(rng.uniform(*np.log(r), n))) if s.log_tau else (lambda r: rng.uniform(*r, n))
    t1, t2 = draw(s.tau1), draw(s.tau2)
    a = rng.beta(*s.a_beta, n)
    swap = t1 > t2                       # overlapping ranges: tau1 is the shorter one; A stays its amplitude
    t1, t2, a = np.where(swap, t2, t1), np.where(swap, t1, t2), np.where(swap, 1 - a, a)
    mono = rng.uniform(size=n) < s.mono_fraction
    t2, a = np.where(mono, t1, t2), np.where(mono, 1.0, a)
    return {"tau1": t1, "tau2": t2, "a": a, "tau_m": a * t1 + (1 - a) * t2, "mono": mono}


def prior_median(s: FlimSetting, n: int = 200_000, seed: int = 12345) -> dict[str, float]:
    """Marginal prior medians (the best constant guess under absolute error), by seeded sampling."""
    p = sample_prior(s, n, np.random.default_rng(seed))
    return {k: float(np.median(p[k])) for k in ("tau1", "tau2", "a", "tau_m")}


def _irf_gates(shape: np.ndarray, center: np.ndarray, fwhm: np.ndarray, rng: np.random.Generator,
               edges: np.ndarray) -> np.ndarray:
    """IRFs integrated exactly over each gate (CDF differences at the gate edges), one row per pixel."""
    n = len(shape)
    sigma = (fwhm / 2.3548)[:, None]
    x = edges[None, :] - center[:, None]
    cdf = special.ndtr(x / sigma)
    tail = shape == "exgauss"
    if tail.any():
        tau_tail = rng.uniform(0.02, 0.12, n)[:, None]
        emg = stats.exponnorm.cdf(x, tau_tail / sigma, scale=sigma)
        cdf = np.where(tail[:, None], emg, cdf)
    echo = shape == "reflection"
    if echo.any():
        delay, strength = rng.uniform(0.3, 0.8, n)[:, None], rng.uniform(0.05, 0.20, n)[:, None]
        cdf = np.where(echo[:, None], (cdf + strength * special.ndtr((x - delay) / sigma)) / (1 + strength), cdf)
    wide = shape == "gamma_wide"
    if wide.any():  # gamma(k) with its mode at the centre; k sets the skew, the scale the width
        k = rng.uniform(2.5, 5.0, n)[:, None]
        theta = rng.uniform(0.25, 0.45, n)[:, None] / (2.3548 * np.sqrt(k))
        cdf = np.where(wide[:, None], special.gammainc(k, np.clip(x / theta + (k - 1), 0, None)), cdf)
    irf = np.clip(np.diff(cdf, axis=1), 0.0, None)
    return irf / np.maximum(irf.sum(1, keepdims=True), 1e-300)


def components(irf: np.ndarray, tau, gate: float, period: float, deriv: bool = False):
    """Expected counts per gate (unnormalized) of one exponential: IRF [n, G] convolved with exp(-t/tau),
    every earlier laser pulse included, zero at and after the period. tau [n] -> [n, G]; tau [n, m] ->
    [n, m, G]; with `deriv` also d/d(log tau). Closed form: the gate-integrated kernel is geometric, so the
    convolution is a running log-sum-exp; the earlier pulses add exp(-t/tau) times a constant."""
    squeeze = np.ndim(tau) == 1
    x = 1.0 / np.asarray(tau, float)[..., None]
    x = (x[..., None] if squeeze else x)                              # [n, m, 1]
    g = irf.shape[-1]
    k = np.arange(g)
    with np.errstate(divide="ignore", over="ignore"):   # log(0) = -inf (no IRF there); no earlier pulses: wrap 0
        log_irf = np.log(irf)[:, None, :]
        log_k = np.log(k)
        wrap = 1.0 / np.expm1(period * x)
    lin = log_irf + k * gate * x
    run = np.logaddexp.accumulate(lin, axis=-1)
    damp = -k * gate * x
    e, f = np.exp(run + damp), np.exp(run[..., -1:] + damp)
    pref = -np.expm1(-gate * x) / x
    mask = period_mask(g, gate, period)
    c = pref * (e + wrap * f) * mask
    if not deriv:
        return c[:, 0] if squeeze else c
    run2 = np.logaddexp.accumulate(lin + log_k, axis=-1)
    de = gate * (np.exp(run2 + damp) - k * e)
    df = gate * (np.exp(run2[..., -1:] + damp) - k * f)
    dpref = gate * np.exp(-gate * x) / x - pref / x
    dc = -x * (dpref * (e + wrap * f) + pref * (de - period * wrap * (1 + wrap) * f + wrap * df)) * mask
    return (c[:, 0], dc[:, 0]) if squeeze else (c, dc)


def period_mask(gates: int, gate: float, period: float) -> np.ndarray:
    """Share of each gate before the laser period ends (1, then a partial gate, then 0)."""
    return np.clip((period - np.arange(gates) * gate) / gate, 0.0, 1.0)


def expected_rates(irf: np.ndarray, tau1, tau2, a, gate: float, period: float) -> np.ndarray:
    """Normalized expected counts [n, G] of bi-exponential decays (per-pixel tau1, tau2, A)."""
    n = len(irf)
    tau1, tau2, a = (np.broadcast_to(np.asarray(x, float), (n,)) for x in (tau1, tau2, a))
    rate = a[:, None] * components(irf, tau1, gate, period) + (1 - a[:, None]) * components(irf, tau2, gate, period)
    rate = np.clip(rate, 0.0, None)
    return rate / rate.sum(1, keepdims=True)


CHUNK = 4096  # pixels simulated at once (bounds memory); fixed so a seed always gives the same data


def simulate(setting: FlimSetting, n: int, seed, shapes: tuple[str, ...] | None = None,
             irf: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """n pixels: counts [n, G] (int32), irf [n, G] (float32, sums to 1), tau1, tau2, a, tau_m, photons,
    shape, mono, background. `seed`: an int or a sequence of ints (a training batch's indices). `irf` [G]:
    every pixel gets this IRF instead of its own draw."""
    shapes = tuple(shapes or setting.irf_shapes)
    unknown = set(shapes) - set(ALL_SHAPES)
    if unknown:
        raise ValueError(f"unknown IRF shape(s) {sorted(unknown)}; known: {ALL_SHAPES}")
    children = np.random.SeedSequence(seed).spawn(max(1, -(-n // CHUNK)))
    parts = [_simulate_chunk(setting, min(CHUNK, n - i * CHUNK), np.random.default_rng(c), shapes, irf)
             for i, c in enumerate(children)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _simulate_chunk(s: FlimSetting, n: int, rng: np.random.Generator, shapes: tuple[str, ...],
                    fixed_irf: np.ndarray | None) -> dict:
    g, gate = s.gates, s.gate_ns
    prior = sample_prior(s, n, rng)
    photons = np.exp(rng.uniform(*np.log(s.photons), n))
    shape = np.asarray(shapes)[rng.integers(0, len(shapes), n)]
    center = s.irf_center_ns + rng.uniform(0, s.irf_jitter_ns, n)
    fwhm = rng.uniform(*s.irf_fwhm_ps, n) / 1000.0
    window = min(g, int(np.ceil((s.irf_center_ns + s.irf_jitter_ns + IRF_SPAN_NS) / gate)))
    irf = np.zeros((n, g))
    irf[:, :window] = _irf_gates(shape, center, fwhm, rng, np.arange(window + 1) * gate)
    if fixed_irf is not None:
        irf, shape = np.broadcast_to(np.asarray(fixed_irf, float) / np.sum(fixed_irf), (n, g)), np.full(n, "given")
    rate = expected_rates(irf, prior["tau1"], prior["tau2"], prior["a"], gate, s.period_ns)
    bg = rng.uniform(0, s.background, n) if s.background > 0 else np.zeros(n)
    if s.background > 0:
        mask = period_mask(g, gate, s.period_ns)
        rate = (1 - bg[:, None]) * rate + bg[:, None] * mask / mask.sum()
    counts = rng.poisson(photons[:, None] * rate)
    return {"counts": counts.astype(np.int32), "irf": irf.astype(np.float32), **prior, "photons": photons,
            "shape": shape, "background": bg}
