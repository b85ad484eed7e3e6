"""The lifetime simulator and the classical estimators (no model, no CLI): fast, statistical checks."""
from __future__ import annotations

import numpy as np
import pytest

from domains.spectra import fit
from domains.spectra.flim import ALL_SHAPES, FlimSetting, convolve_decay, simulate


def test_same_seed_same_data_and_documented_shapes():
    s = FlimSetting()
    a, b, c = simulate(s, 300, seed=7), simulate(s, 300, seed=7), simulate(s, 300, seed=8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["counts"], c["counts"])
    assert a["counts"].shape == a["irf"].shape == (300, 256)
    assert np.allclose(a["irf"].sum(1), 1, atol=1e-5) and (a["irf"] >= 0).all()
    assert set(a["shape"]) <= set(s.irf_shapes)
    assert ((a["tau1"] >= 0.2) & (a["tau1"] <= 0.5)).all() and ((a["tau2"] >= 2) & (a["tau2"] <= 3)).all()
    np.testing.assert_allclose(a["tau_m"], a["a"] * a["tau1"] + (1 - a["a"]) * a["tau2"])
    # IRF peaks at the configured centre plus a jitter of 0-3 gates (the FWHM can shift the argmax by one)
    peaks = a["irf"].argmax(1)
    assert peaks.min() >= s.irf_center_gates - 1 and peaks.max() <= s.irf_center_gates + s.irf_jitter_gates + 1


def test_photon_counts_are_poisson_around_the_requested_total():
    s = FlimSetting(photons=(400.0, 400.0))
    totals = simulate(s, 4000, seed=1)["counts"].sum(1)
    assert abs(totals.mean() - 400) < 2.5        # standard error of the mean is 20/sqrt(4000) ~ 0.3
    assert 0.85 < totals.var() / 400 < 1.15      # Poisson: variance = mean
    wide = simulate(FlimSetting(photons=(100.0, 1000.0)), 4000, seed=2)["photons"]
    assert wide.min() >= 100 and wide.max() <= 1000
    assert abs(np.median(np.log(wide)) - np.log(np.sqrt(100 * 1000))) < 0.1   # log-uniform


@pytest.mark.parametrize("tau", [0.3, 1.0, 2.5])
def test_noiseless_decay_slope_recovers_tau(tau):
    s = FlimSetting()
    sim = simulate(s, 1, seed=3)
    rate = convolve_decay(sim["irf"].astype(float), tau, tau, 1.0, s.gate_ns)[0]
    tail = np.arange(60, min(250, 60 + int(4 * tau / s.gate_ns)))   # well after the IRF, inside the window
    slope = np.polyfit(tail * s.gate_ns, np.log(rate[tail]), 1)[0]
    assert abs(-1 / slope - tau) / tau < 0.01


def test_ood_irfs_are_wider_than_the_training_family():
    s = FlimSetting()
    fwhm = lambda irf: (irf > irf.max(1, keepdims=True) / 2).sum(1) * s.gate_ps  # noqa: E731
    train = simulate(s, 500, seed=4)["irf"]
    ood = simulate(s, 500, seed=4, shapes=("gamma_wide",))["irf"]
    assert np.median(fwhm(ood)) > 1.4 * np.median(fwhm(train))
    with pytest.raises(ValueError, match="unknown IRF shape"):
        simulate(s, 2, seed=0, shapes=("square",))
    assert "gamma_wide" in ALL_SHAPES and "gamma_wide" not in s.irf_shapes


def _well_posed(n, seed, photons=1e6):
    """High-count pixels with both components clearly present (A far from 0 and 1)."""
    s = FlimSetting(photons=(photons, photons))
    d = simulate(s, 4 * n, seed=seed)
    keep = np.flatnonzero((d["a"] > 0.25) & (d["a"] < 0.75))[:n]
    return s, {k: v[keep] for k, v in d.items()}


def test_mle_recovers_known_parameters_at_high_counts():
    s, d = _well_posed(8, seed=5)
    est = fit.mle(d["counts"], d["irf"], s)
    assert np.abs(est["tau1"] - d["tau1"]).max() < 0.02
    assert np.abs(est["tau2"] - d["tau2"]).max() < 0.03
    assert np.abs(est["a"] - d["a"]).max() < 0.02
    assert np.abs(est["tau_m"] - d["tau_m"]).max() < 0.02


def test_other_estimators_are_sane_at_high_counts():
    s, d = _well_posed(8, seed=6)
    mid = s.midpoint()
    for name in ("lsq", "phasor"):
        est = fit.ESTIMATORS[name](d["counts"], d["irf"], s)
        err = np.abs(est["tau_m"] - d["tau_m"]).mean()
        assert err < 0.1, (name, err)
        assert err < np.abs(mid["tau_m"] - d["tau_m"]).mean() / 3      # far better than guessing the middle
    out = fit.midpoint(d["counts"], d["irf"], s)
    assert np.allclose(out["tau1"], 0.35) and np.allclose(out["tau_m"], 0.5 * 0.35 + 0.5 * 2.5)


@pytest.mark.skipif(not fit.flimlib_available(), reason="flimlib not installed")
def test_flimlib_peer_returns_finite_ordered_estimates():
    s, d = _well_posed(4, seed=7, photons=1e5)
    est = fit.flimlib_lma(d["counts"], d["irf"], s)
    assert all(np.isfinite(est[k]).all() for k in est)
    assert (est["tau1"] <= est["tau2"]).all() and ((est["a"] >= 0) & (est["a"] <= 1)).all()


@pytest.mark.parametrize("gates, bins", [(256, 32), (176, 32), (256, 48)])
def test_log_bins_cover_the_window_with_one_gate_bins_over_the_rise(gates, bins):
    from domains.spectra.model import log_bin_edges
    edges = np.array(log_bin_edges(gates, 20.0, bins))
    widths = np.diff(edges)
    assert len(widths) == bins and edges[0] == 0 and edges[-1] == gates and (widths >= 1).all()
    assert (widths[1:17] == 1).all() and edges[1] <= 15 and edges[17] >= 30   # IRF peak 20-23, tau1 >= 4 gates
    assert (np.diff(widths[17:]) >= -1).all()                                   # widening after the rise


def test_lifetime_tokens_are_binned_fractions_and_moments():
    import torch
    from domains.spectra.model import LifetimeModel, log_bin_edges
    s = FlimSetting()
    d = simulate(s, 64, seed=11)
    meta = {"gates": 256, "gate_ps": s.gate_ps, "patch": 16, "bin_edges": log_bin_edges(256, 20.0, 32),
            "irf_center_gates": 20.0, "irf_gates": 76, "tau1": [0.2, 0.5], "tau2": [2.0, 3.0], "hidden": 8,
            "dropout": 0.0, "encoder": {"d_model": 8, "n_heads": 1, "n_layers": 1, "d_ff": 16, "dropout": 0.0,
                                        "attention": "sdpa", "rotary": False, "max_len": 8}}
    model = LifetimeModel(meta)
    counts = torch.from_numpy(d["counts"].astype(np.float32))
    tokens, scalars = model.tokens(counts, torch.from_numpy(d["irf"]))
    assert tokens.shape == (64, 2, 32) and scalars.shape == (64, 5)
    sums = np.add.reduceat(d["counts"], meta["bin_edges"][:-1], axis=1)
    frac = sums / d["counts"].sum(1, keepdims=True)
    np.testing.assert_allclose(tokens[:, :, :16].reshape(64, 32).numpy() ** 2, frac * 32 / 8, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scalars[:, 0].numpy(), np.log10(d["counts"].sum(1)) - 2.5, rtol=1e-5)
    # decay delay (histogram mean minus IRF mean, ns) grows with the mean lifetime
    delay = scalars[:, 1].numpy() + 1.5
    assert np.corrcoef(delay, d["a"] * d["tau1"] ** 2 + (1 - d["a"]) * d["tau2"] ** 2)[0, 1] > 0.8
    assert model({"counts": counts, "irf": torch.from_numpy(d["irf"])}).shape == (64, 4)
