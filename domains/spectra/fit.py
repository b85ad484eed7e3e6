"""Classical lifetime estimators, run on exactly the pixels the model sees (each gets the pixel's IRF).

* ``mle``           the reference fitter: per-pixel Poisson maximum likelihood of the simulator's own forward
                    model (`flim.components`: IRF convolution, earlier laser pulses, period cutoff), amplitude
                    profiled out (multinomial), scipy L-BFGS-B on (log tau1, log tau2, A) with the analytic
                    gradient; mono-exponential fitted too where the prior allows it, Akaike picks one
* ``fast_mle``      the same likelihood, every pixel of a batch fitted together (`fit_fast`, torch LM)
* ``lsq``           Neyman-weighted least squares (residuals / sqrt(max(counts, 1))), free amplitude, scipy TRF
* ``phasor``        IRF-calibrated phasors at the first two harmonics, unmixed into two lifetimes and a fraction
                    by a vectorized grid search (closed-form fraction per lifetime pair)
* ``prior_median``  the marginal medians of the training prior: the best constant under absolute error
* ``flimlib``       flimlib's Levenberg-Marquardt (GCI_marquardt_fitting_engine, Poisson-fit noise, the pixel's
                    IRF as the prompt, no bounds, no earlier pulses), when flimlib imports

Both MLEs and lsq start at the best point of the same coarse grid (`fit_fast.grid_start`) and are bounded to
the prior's lifetime ranges (A in [0, 1]): the same support the model is trained on. They use no prior
density; `bayes.py` is the estimator that does. Every estimator returns {tau1, tau2, a, tau_m} arrays with
tau1 <= tau2 (mono-exponential: tau1 = tau2, A = 1).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares, minimize

from domains.spectra import fit_fast
from domains.spectra.flim import FlimSetting, components
from domains.spectra.flim import prior_median as _prior_median

TAU_BOUNDS = (0.02, 50.0)   # ns; physical bounds for the flimlib peer (it takes no box constraints)


def _starts(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting) -> dict[str, np.ndarray]:
    parts = [fit_fast.fit_batch(counts[i:i + fit_fast.BATCH], irf[i:i + fit_fast.BATCH], setting, starts=True)
             for i in range(0, len(counts), fit_fast.BATCH)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _log_bounds(setting: FlimSetting) -> list[tuple[float, float]]:
    return [tuple(np.log(setting.tau1)), tuple(np.log(setting.tau2)), (0.0, 1.0)]


def _nll_bi(theta, y, irf, gate, period):
    c, dc = components(irf, np.exp(theta[None, :2]), gate, period, deriv=True)
    c, dc, a = c[0], dc[0], theta[2]
    r = np.maximum(a * c[0] + (1 - a) * c[1], 1e-300)
    jac = np.stack([a * dc[0], (1 - a) * dc[1], c[0] - c[1]])
    total, s_r = y.sum(), r.sum()
    return -(y * np.log(r)).sum() + total * np.log(s_r), -(jac * (y / r)).sum(1) + total * jac.sum(1) / s_r


def _nll_mono(theta, y, irf, gate, period):
    c, dc = components(irf, np.exp(theta[None, :1]), gate, period, deriv=True)
    r, d = np.maximum(c[0, 0], 1e-300), dc[0, 0]
    total, s_r = y.sum(), r.sum()
    return -(y * np.log(r)).sum() + total * np.log(s_r), np.array([-(d * y / r).sum() + total * d.sum() / s_r])


def mle(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting) -> dict[str, np.ndarray]:
    starts = _starts(counts, irf, setting)
    gate, period = setting.gate_ns, setting.period_ns
    est, nll = np.empty((len(counts), 3)), np.empty(len(counts))
    mono_tau, mono_nll = np.full(len(counts), np.nan), np.full(len(counts), np.inf)
    lo, hi = np.log(setting.support())
    for i in range(len(counts)):
        y, pixel_irf = counts[i].astype(float), irf[i:i + 1].astype(float)
        res = minimize(_nll_bi, starts["start"][i], args=(y, pixel_irf, gate, period), jac=True,
                       method="L-BFGS-B", bounds=_log_bounds(setting))
        est[i], nll[i] = res.x, res.fun
        if setting.mono_fraction > 0:
            res = minimize(_nll_mono, starts["start_mono"][i], args=(y, pixel_irf, gate, period), jac=True,
                           method="L-BFGS-B", bounds=[(lo, hi)])
            mono_tau[i], mono_nll[i] = np.exp(res.x[0]), res.fun
    out = fit_fast._ordered(np.exp(est[:, 0]), np.exp(est[:, 1]), est[:, 2])
    return _select_mono(out, nll, mono_tau, mono_nll)


def _select_mono(out: dict, nll: np.ndarray, mono_tau: np.ndarray, mono_nll: np.ndarray) -> dict[str, np.ndarray]:
    """Akaike: the bi-exponential model must lower the negative log-likelihood by more than its 2 extra
    parameters (the same rule as fit_fast)."""
    mono = 2 * (mono_nll - nll) <= 2 * fit_fast.AIC_EXTRA
    for key, value in (("tau1", mono_tau), ("tau2", mono_tau), ("a", 1.0), ("tau_m", mono_tau)):
        out[key] = np.where(mono, value, out[key])
    return out


def fast_mle(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting) -> dict[str, np.ndarray]:
    out = fit_fast.fit_fast(counts, irf, setting)
    return {k: out[k] for k in ("tau1", "tau2", "a", "tau_m")}


def lsq(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting) -> dict[str, np.ndarray]:
    starts = _starts(counts, irf, setting)["start"]
    gate, period = setting.gate_ns, setting.period_ns
    (l1, h1), (l2, h2), _ = _log_bounds(setting)
    est = np.empty((len(counts), 3))
    for i in range(len(counts)):
        y, pixel_irf = counts[i].astype(float), irf[i:i + 1].astype(float)
        w = 1.0 / np.sqrt(np.maximum(y, 1.0))

        def residual(p, y=y, w=w, pixel_irf=pixel_irf):
            c = components(pixel_irf, np.exp(p[None, :2]), gate, period)[0]
            shape = p[2] * c[0] + (1 - p[2]) * c[1]
            return (y - p[3] * shape / max(shape.sum(), 1e-300)) * w

        start = np.clip([*starts[i], max(y.sum(), 1.0)], [l1, l2, 0, 0], [h1, h2, 1, np.inf])
        res = least_squares(residual, start, method="trf", bounds=([l1, l2, 0, 0], [h1, h2, 1, np.inf]))
        est[i] = res.x[:3]
    return fit_fast._ordered(np.exp(est[:, 0]), np.exp(est[:, 1]), est[:, 2])


def _phasors(x: np.ndarray, harmonics=(1, 2)) -> np.ndarray:
    """Normalized phasors [..., H] (complex) over the window (period = window length)."""
    g = x.shape[-1]
    basis = np.exp(2j * np.pi * np.outer(np.arange(g), harmonics) / g)
    return (x @ basis) / np.maximum(x.sum(-1, keepdims=True), 1e-12)


def phasor(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting, n_grid: int = 40) -> dict[str, np.ndarray]:
    g, gate = setting.gates, setting.gate_ns
    p = _phasors(counts.astype(float)) / _phasors(irf.astype(float))      # IRF-calibrated, [n, 2]
    space = np.geomspace if setting.log_tau else np.linspace
    t1, t2 = space(*setting.tau1, n_grid), space(*setting.tau2, n_grid)
    taus = np.concatenate([t1, t2])
    delta = np.zeros((1, g))
    delta[0, 0] = 1.0
    kern = components(delta, taus[None], gate, setting.period_ns)[0]     # decays from a delta pulse
    phi, area = _phasors(kern), kern.sum(1)
    i1, i2 = (x.ravel() for x in np.meshgrid(np.arange(n_grid), n_grid + np.arange(n_grid), indexing="ij"))
    keep = taus[i1] <= taus[i2]
    i1, i2 = i1[keep], i2[keep]
    d = phi[i1] - phi[i2]                                                   # [P, 2]
    d_norm = np.maximum((np.abs(d) ** 2).sum(-1), 1e-30)
    best = np.zeros((len(p), 3))
    for start in range(0, len(p), 256):                                     # [256, P, 2] blocks
        r = p[start:start + 256, None, :] - phi[i2][None]
        f = np.clip((np.conj(d)[None] * r).real.sum(-1) / d_norm[None], 0, 1)
        err = (np.abs(r - f[..., None] * d[None]) ** 2).sum(-1)
        j = err.argmin(1)
        fi = f[np.arange(len(j)), j]
        # intensity fraction -> amplitude fraction: f = a*area1 / (a*area1 + (1-a)*area2)
        a = fi * area[i2[j]] / np.maximum(fi * area[i2[j]] + (1 - fi) * area[i1[j]], 1e-12)
        best[start:start + 256] = np.stack([taus[i1[j]], taus[i2[j]], a], 1)
    return fit_fast._ordered(*best.T)


def prior_median(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting) -> dict[str, np.ndarray]:
    med = _prior_median(setting)
    return {k: np.full(len(counts), v) for k, v in med.items()}


def flimlib_available() -> bool:
    try:
        import flimlib  # noqa: F401
        return True
    except Exception:  # a missing or broken native library both mean "skip this peer"
        return False


def flimlib_lma(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting) -> dict[str, np.ndarray]:
    import flimlib
    starts = np.exp(_starts(counts, irf, setting)["start"][:, :2])
    est = np.empty((len(counts), 3))
    for i in range(len(counts)):  # the prompt is one array per call: one call per pixel (its own IRF)
        y = counts[i].astype(np.float32)
        t1, t2 = starts[i]
        a0 = max(float(y.sum()), 1.0) * setting.gate_ns / (t1 + t2)
        res = flimlib.GCI_marquardt_fitting_engine(
            setting.gate_ns, y, np.array([0.0, a0, t1, a0, t2], np.float32), instr=irf[i].astype(np.float32),
            noise_type="NOISE_POISSON_FIT", paramfree=[0, 1, 1, 1, 1], compute_fitted=False, compute_residuals=False,
            compute_covar=False, compute_alpha=False, compute_erraxes=False)
        _, a1, f1, a2, f2 = np.asarray(res.param, float)
        a1, a2 = max(a1, 0.0), max(a2, 0.0)
        est[i] = (f1, f2, a1 / max(a1 + a2, 1e-12))
    # a diverged fit (NaN) reports its start, so one bad pixel cannot turn the mean error into NaN
    fallback = np.column_stack([starts, np.full(len(counts), 0.5)])
    est = np.where(np.isfinite(est), est, fallback)
    est[:, :2] = np.clip(est[:, :2], *TAU_BOUNDS)
    return fit_fast._ordered(*est.T)


ESTIMATORS = {"mle": mle, "fast_mle": fast_mle, "lsq": lsq, "phasor": phasor, "prior_median": prior_median,
              "flimlib": flimlib_lma}
