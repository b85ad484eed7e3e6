"""Classical lifetime estimators, run on exactly the pixels the model sees (each gets the pixel's IRF).

* ``mle``       per-pixel Poisson maximum likelihood of the IRF-convolved bi-exponential (the simulator's own
                forward model), amplitude profiled out, L-BFGS-B with the analytic gradient (scipy)
* ``lsq``       Neyman-weighted least squares (residuals / sqrt(max(counts, 1))), free amplitude, scipy TRF
* ``phasor``    IRF-calibrated phasors at the first two harmonics, unmixed into two lifetimes and a fraction
                by a vectorized grid search (closed-form fraction per lifetime pair)
* ``midpoint``  the centre of the simulated ranges (at low counts no fit beats it on tau1)
* ``flimlib``   flimlib's Levenberg-Marquardt (GCI_marquardt_fitting_engine, Poisson-fit noise, the pixel's
                IRF as the prompt), when flimlib imports

The fits are bounded to the simulated ranges of tau1 and tau2 (A in [0, 1]): the same prior knowledge the
model is trained with, as in the published comparisons. Every estimator returns {tau1, tau2, a, tau_m}
arrays with tau1 <= tau2 (components swapped if needed).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares, minimize

from domains.spectra.flim import FlimSetting, gate_integrated_decay

TAU_BOUNDS = (0.02, 8.0)   # ns; physical bounds for the flimlib peer (it takes no box constraints)


def _start(setting: FlimSetting) -> tuple[float, float, float]:
    mid = setting.midpoint()
    return mid["tau1"], mid["tau2"], 0.5


def _bounds(setting: FlimSetting) -> list[tuple[float, float]]:
    return [tuple(setting.tau1), tuple(setting.tau2), (0.0, 1.0)]


def _ordered(tau1, tau2, a) -> dict[str, np.ndarray]:
    tau1, tau2, a = (np.asarray(x, float) for x in (tau1, tau2, a))
    swap = tau1 > tau2
    t1, t2 = np.where(swap, tau2, tau1), np.where(swap, tau1, tau2)
    a = np.clip(np.where(swap, 1 - a, a), 0, 1)
    return {"tau1": t1, "tau2": t2, "a": a, "tau_m": a * t1 + (1 - a) * t2}


def _kernels(theta, gates: int, gate: float):
    """Decay kernel and its derivatives wrt (tau1, tau2, a): [4, G]."""
    t1, t2, a = theta
    edges = np.arange(gates + 1) * gate
    out = []
    for tau in (t1, t2):
        e = np.exp(-edges / tau)
        k = tau * (e[:-1] - e[1:])
        dk = (e[:-1] - e[1:]) + (edges[:-1] * e[:-1] - edges[1:] * e[1:]) / tau
        out.append((k, dk))
    (k1, dk1), (k2, dk2) = out
    return np.stack([a * k1 + (1 - a) * k2, a * dk1, (1 - a) * dk2, k1 - k2])


def _nll_and_grad(theta, y, irf_fft, gates, gate, size):
    r_all = np.fft.irfft(np.fft.rfft(_kernels(theta, gates, gate), size) * irf_fft, size)[:, :gates]
    r, dr = np.maximum(r_all[0], 1e-300), r_all[1:]
    total = r.sum()
    nll = -(y * np.log(r)).sum() + y.sum() * np.log(total)
    grad = -(dr * (y / r)).sum(1) + y.sum() * dr.sum(1) / total
    return nll, grad


def mle(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting) -> dict[str, np.ndarray]:
    g, gate, size = setting.gates, setting.gate_ns, 2 * setting.gates
    est = np.empty((len(counts), 3))
    for i in range(len(counts)):
        y = counts[i].astype(float)
        irf_fft = np.fft.rfft(irf[i].astype(float), size)
        res = minimize(_nll_and_grad, _start(setting), args=(y, irf_fft, g, gate, size), jac=True,
                       method="L-BFGS-B", bounds=_bounds(setting))
        est[i] = res.x
    return _ordered(*est.T)


def lsq(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting) -> dict[str, np.ndarray]:
    g, gate, size = setting.gates, setting.gate_ns, 2 * setting.gates
    est = np.empty((len(counts), 3))
    for i in range(len(counts)):
        y = counts[i].astype(float)
        w = 1.0 / np.sqrt(np.maximum(y, 1.0))
        irf_fft = np.fft.rfft(irf[i].astype(float), size)

        def residual(p, y=y, w=w, irf_fft=irf_fft):
            shape = np.fft.irfft(np.fft.rfft(_kernels(p[:3], g, gate)[0], size) * irf_fft, size)[:g]
            return (y - p[3] * shape / max(shape.sum(), 1e-300)) * w

        (l1, h1), (l2, h2), _ = _bounds(setting)
        res = least_squares(residual, [*_start(setting), max(y.sum(), 1.0)], method="trf",
                            bounds=([l1, l2, 0, 0], [h1, h2, 1, np.inf]))
        est[i] = res.x[:3]
    return _ordered(*est.T)


def _phasors(x: np.ndarray, harmonics=(1, 2)) -> np.ndarray:
    """Normalized phasors [n, H] (complex) over the window (period = window length)."""
    g = x.shape[-1]
    k = np.arange(g)
    basis = np.exp(2j * np.pi * np.outer(k, harmonics) / g)
    return (x @ basis) / np.maximum(x.sum(-1, keepdims=True), 1e-12)


def phasor(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting, n_grid: int = 40) -> dict[str, np.ndarray]:
    g, gate = setting.gates, setting.gate_ns
    p = _phasors(counts.astype(float)) / _phasors(irf.astype(float))      # IRF-calibrated, [n, 2]
    taus = np.concatenate([np.linspace(*setting.tau1, n_grid), np.linspace(*setting.tau2, n_grid)])
    kern = gate_integrated_decay(taus, g, gate)
    phi, area = _phasors(kern), kern.sum(1)                                 # per candidate lifetime
    i1, i2 = (x.ravel() for x in np.meshgrid(np.arange(n_grid), n_grid + np.arange(n_grid), indexing="ij"))
    d = phi[i1] - phi[i2]                                                   # [P, 2]
    best_err = np.full(len(p), np.inf)
    best = np.zeros((len(p), 3))
    for start in range(0, len(p), 256):                                     # [256, P, 2] blocks
        r = p[start:start + 256, None, :] - phi[i2][None]
        f = np.clip((np.conj(d)[None] * r).real.sum(-1) / (np.abs(d) ** 2).sum(-1)[None], 0, 1)
        err = (np.abs(r - f[..., None] * d[None]) ** 2).sum(-1)
        j = err.argmin(1)
        rows = np.arange(len(j))
        best_err[start:start + 256] = err[rows, j]
        fi = f[rows, j]
        # intensity fraction -> amplitude fraction: f = a*area1 / (a*area1 + (1-a)*area2)
        a = fi * area[i2[j]] / np.maximum(fi * area[i2[j]] + (1 - fi) * area[i1[j]], 1e-12)
        best[start:start + 256] = np.stack([taus[i1[j]], taus[i2[j]], a], 1)
    return _ordered(*best.T)


def midpoint(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting) -> dict[str, np.ndarray]:
    mid = setting.midpoint()
    return {k: np.full(len(counts), v) for k, v in mid.items()}


def flimlib_available() -> bool:
    try:
        import flimlib  # noqa: F401
        return True
    except Exception:  # a missing or broken native library both mean "skip this peer"
        return False


def flimlib_lma(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting) -> dict[str, np.ndarray]:
    import flimlib
    start = _start(setting)
    est = np.empty((len(counts), 3))
    for i in range(len(counts)):  # the prompt is one array per call: one call per pixel (its own IRF)
        y = counts[i].astype(np.float32)
        total = max(float(y.sum()), 1.0)
        a0 = total * setting.gate_ns / (start[0] + start[1])
        res = flimlib.GCI_marquardt_fitting_engine(
            setting.gate_ns, y, np.array([0.0, a0, start[0], a0, start[1]], np.float32), instr=irf[i].astype(np.float32),
            noise_type="NOISE_POISSON_FIT", paramfree=[0, 1, 1, 1, 1], compute_fitted=False, compute_residuals=False,
            compute_covar=False, compute_alpha=False, compute_erraxes=False)
        _, a1, t1, a2, t2 = np.asarray(res.param, float)
        a1, a2 = max(a1, 0.0), max(a2, 0.0)
        est[i] = (t1, t2, a1 / max(a1 + a2, 1e-12))
    # a diverged fit (NaN) reports the start values, so one bad pixel cannot turn the mean error into NaN
    est = np.where(np.isfinite(est), est, np.array(start))
    est[:, :2] = np.clip(est[:, :2], *TAU_BOUNDS)
    return _ordered(*est.T)


ESTIMATORS = {"mle": mle, "lsq": lsq, "phasor": phasor, "midpoint": midpoint, "flimlib": flimlib_lma}
