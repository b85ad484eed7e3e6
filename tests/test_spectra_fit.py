"""The lifetime fitters: scipy MLE (reference), batched MLE, Bayesian posterior median, classical estimators."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from domains.spectra import bayes, fit, fit_fast
from domains.spectra.flim import FlimSetting, simulate

FLI = FlimSetting(tau1=(0.2, 0.5), tau2=(2.0, 3.0), log_tau=False, mono_fraction=0.0, irf_fwhm_ps=(80.0, 200.0))


def _well_posed(n, seed, photons=1e6, setting=FLI):
    """High-count bi-exponential pixels with both components clearly present (A far from 0 and 1)."""
    s = setting.with_(photons=(photons, photons), mono_fraction=0.0)
    d = simulate(s, 6 * n, seed=seed)
    keep = np.flatnonzero((d["a"] > 0.25) & (d["a"] < 0.75) & (d["tau2"] > 3 * d["tau1"]))[:n]
    return s, {k: v[keep] for k, v in d.items()}


def test_scipy_mle_recovers_known_parameters_at_high_counts():
    s, d = _well_posed(6, seed=5)
    est = fit.mle(d["counts"], d["irf"], s)
    assert np.abs(est["tau1"] - d["tau1"]).max() < 0.02
    assert np.abs(est["tau2"] - d["tau2"]).max() < 0.05
    assert np.abs(est["a"] - d["a"]).max() < 0.02
    assert np.abs(est["tau_m"] - d["tau_m"]).max() < 0.02


def test_fast_mle_recovers_lifetimes_and_agrees_with_the_scipy_mle():
    s, d = _well_posed(12, seed=6, setting=FlimSetting())          # family prior: 0.1-10 ns, both fitted
    fast = fit_fast.fit_fast(d["counts"], d["irf"], s)
    # statistical error at 1e6 photons: several % on a short tau1 under a wide (up to 350 ps) IRF
    assert (np.abs(fast["tau1"] - d["tau1"]) / d["tau1"]).max() < 0.1
    assert (np.abs(fast["tau_m"] - d["tau_m"]) / d["tau_m"]).max() < 0.02
    assert not fast["mono"].any()                                  # clearly bi-exponential at 1e6 photons
    ref = fit.mle(d["counts"][:6], d["irf"][:6], s)
    for key in ("tau1", "tau2", "a", "tau_m"):                     # the same optimum of the same likelihood
        np.testing.assert_allclose(fast[key][:6], ref[key], rtol=0, atol=2e-3 * max(1.0, d[key].max()))


def test_fast_mle_fits_the_true_optimum_not_worse_than_truth():
    s = FlimSetting(photons=(1e5, 1e5), mono_fraction=0.0)
    d = simulate(s, 48, seed=8)
    y = torch.as_tensor(d["counts"], dtype=fit_fast.DTYPE)
    fwd = fit_fast.Forward(d["irf"], s.gate_ns, s.period_ns)
    truth = torch.tensor(np.c_[np.log(d["tau1"]), np.log(d["tau2"]), d["a"]])
    nll_true = fit_fast._nll(y, fit_fast._rates(fwd, truth, mono=False))
    _, nll = fit_fast.fit_theta(fwd, y, s, mono=False)
    assert (nll <= nll_true + 0.5).float().mean() >= 0.95          # the optimizer finds the global basin


def test_fast_mle_detects_mono_exponential_pixels():
    s = FlimSetting(photons=(1e5, 1e5), mono_fraction=1.0)
    d = simulate(s, 16, seed=9)
    out = fit_fast.fit_fast(d["counts"], d["irf"], s)
    assert out["mono"].mean() >= 0.8
    np.testing.assert_allclose(out["tau_m"], d["tau_m"], rtol=0.02)


def test_bayes_posterior_median_is_close_to_the_truth_when_the_data_are_sharp():
    s, d = _well_posed(10, seed=10, photons=2e5, setting=FlimSetting())
    post = bayes.posterior_median(d["counts"], d["irf"], s)
    mle = fit_fast.fit_fast(d["counts"], d["irf"], s)
    assert np.abs(post["tau_m"] - d["tau_m"]).max() < 0.03 * d["tau_m"].max()
    assert np.abs(post["tau1"] - d["tau1"]).mean() < 0.05 * d["tau1"].max()
    # with this much data the posterior median and the MLE nearly coincide
    assert np.abs(post["tau_m"] - mle["tau_m"]).mean() < 0.01 * d["tau_m"].max()


def test_bayes_matches_a_brute_force_posterior_median_for_a_mono_exponential_prior():
    s = FlimSetting(tau1=(0.5, 4.0), tau2=(0.5, 4.0), mono_fraction=1.0, photons=(60.0, 60.0))
    d = simulate(s, 6, seed=11)
    post = bayes.posterior_median(d["counts"], d["irf"], s)
    taus = np.geomspace(0.5, 4.0, 4001)                             # the prior is log-uniform: uniform in log tau
    fwd = fit_fast.Forward(d["irf"], s.gate_ns, s.period_ns)
    c = fwd(torch.tensor(taus).expand(6, -1)).numpy()
    y = d["counts"][:, None]
    loglik = (y * np.log(np.maximum(c, 1e-300))).sum(-1) - y.sum(-1) * np.log(c.sum(-1))
    w = np.exp(loglik - loglik.max(1, keepdims=True))
    cdf = np.cumsum(w, 1) / w.sum(1, keepdims=True)
    brute = np.array([np.interp(0.5, cdf[i], taus) for i in range(6)])
    np.testing.assert_allclose(post["tau_m"], brute, rtol=0.02)
    assert (post["a"] == 1).all() and np.allclose(post["tau1"], post["tau2"])


def test_bayes_stays_inside_the_prior_and_beats_mle_at_low_counts():
    s = FLI.with_(photons=(150.0, 400.0))
    d = simulate(s, 120, seed=12)
    post = bayes.posterior_median(d["counts"], d["irf"], s)
    assert ((post["tau1"] >= 0.2) & (post["tau1"] <= 0.5) & (post["tau2"] >= 2) & (post["tau2"] <= 3)).all()
    mle = fit_fast.fit_fast(d["counts"], d["irf"], s)
    for key in ("tau1", "a", "tau_m"):   # the posterior median minimizes the expected absolute error
        assert np.abs(post[key] - d[key]).mean() < np.abs(mle[key] - d[key]).mean()


def test_bayes_is_finite_for_lifetimes_at_the_edge_of_the_prior():
    """A posterior piled against a range end (tau ~ 0.1 ns under the 0.1-10 ns prior) once gave empty local
    boxes and NaN medians."""
    data = FlimSetting(tau1=(0.1, 0.105), tau2=(0.1, 0.105), mono_fraction=1.0, photons=(1e4, 1e5))
    d = simulate(data, 24, seed=15)
    post = bayes.posterior_median(d["counts"], d["irf"], FlimSetting())
    assert all(np.isfinite(v).all() for v in post.values())
    assert np.median(np.abs(post["tau_m"] - d["tau_m"]) / d["tau_m"]) < 0.1


def test_other_estimators_are_sane_at_high_counts():
    s, d = _well_posed(6, seed=13)
    med = fit.prior_median(d["counts"], d["irf"], s)
    for name in ("lsq", "phasor"):
        est = fit.ESTIMATORS[name](d["counts"], d["irf"], s)
        err = np.abs(est["tau_m"] - d["tau_m"]).mean()
        assert err < 0.1, (name, err)
        assert err < np.abs(med["tau_m"] - d["tau_m"]).mean() / 3      # far better than a constant guess
    assert np.allclose(med["tau1"], med["tau1"][0]) and abs(med["tau1"][0] - 0.35) < 0.01


@pytest.mark.skipif(not fit.flimlib_available(), reason="flimlib not installed")
def test_flimlib_peer_returns_finite_ordered_estimates():
    s, d = _well_posed(4, seed=14, photons=1e5)
    est = fit.flimlib_lma(d["counts"], d["irf"], s)
    assert all(np.isfinite(est[k]).all() for k in est)
    assert (est["tau1"] <= est["tau2"]).all() and ((est["a"] >= 0) & (est["a"] <= 1)).all()
