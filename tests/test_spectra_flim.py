"""The lifetime simulator, its closed-form forward model and the featurization (no model, no CLI)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from domains.spectra.flim import (
    ALL_SHAPES,
    FlimSetting,
    InstrumentFamily,
    components,
    expected_rates,
    prior_median,
    simulate,
)


def test_same_seed_same_data_and_documented_shapes():
    s = FlimSetting()
    a, b, c = simulate(s, 300, seed=7), simulate(s, 300, seed=7), simulate(s, 300, seed=8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["counts"], c["counts"])
    assert a["counts"].shape == a["irf"].shape == (300, 256)
    # float32 IRFs of 256 gates summed: atol well above float32 round-off (~1e-7 per gate)
    np.testing.assert_allclose(a["irf"].sum(1), 1, rtol=0, atol=1e-5)
    assert (a["irf"] >= 0).all() and set(a["shape"]) <= set(s.irf_shapes)
    assert ((a["tau1"] >= 0.1) & (a["tau2"] <= 10) & (a["tau1"] <= a["tau2"])).all()
    mono = a["mono"]
    assert 0.15 < mono.mean() < 0.45                                    # mono_fraction 0.3 of 300 pixels
    assert (a["tau1"][mono] == a["tau2"][mono]).all() and (a["a"][mono] == 1).all()
    np.testing.assert_allclose(a["tau_m"], a["a"] * a["tau1"] + (1 - a["a"]) * a["tau2"], rtol=1e-12, atol=0)
    # the IRF peaks at its centre plus a jitter of 0-0.15 ns (the FWHM and tails move the argmax by a gate)
    peak_ns = (a["irf"].argmax(1) + 0.5) * s.gate_ns
    assert peak_ns.min() >= s.irf_center_ns - 2 * s.gate_ns and peak_ns.max() <= s.irf_center_ns + 0.15 + 3 * s.gate_ns


def test_photon_counts_are_poisson_around_the_requested_total():
    s = FlimSetting(photons=(400.0, 400.0), period_ns=1e6)     # no period cutoff inside the window
    totals = simulate(s, 4000, seed=1)["counts"].sum(1)
    assert abs(totals.mean() - 400) < 2.5        # standard error of the mean is 20/sqrt(4000) ~ 0.3
    assert 0.85 < totals.var() / 400 < 1.15      # Poisson: variance = mean
    wide = simulate(FlimSetting(photons=(100.0, 1000.0)), 4000, seed=2)["photons"]
    assert wide.min() >= 100 and wide.max() <= 1000
    assert abs(np.median(np.log(wide)) - np.log(np.sqrt(100 * 1000))) < 0.1   # log-uniform


def _fft_reference(irf: np.ndarray, tau: float, gate: float, period: float, pulses: int = 12) -> np.ndarray:
    """IRF * gate-integrated exp(-t/tau) by FFT over a long axis, earlier pulses summed explicitly."""
    g = irf.shape[-1]
    per = int(round(period / gate))
    length = per * pulses + g
    edges = np.arange(length + 1) * gate
    kernel = tau * (np.exp(-edges[:-1] / tau) - np.exp(-edges[1:] / tau))
    big = np.zeros((len(irf), length))
    big[:, :g] = irf
    size = 2 * length
    lin = np.fft.irfft(np.fft.rfft(big, size) * np.fft.rfft(kernel, size), size)[:, :length]
    out = sum(lin[:, n * per:n * per + g] for n in range(pulses))
    out[:, per:] = 0
    return out


@pytest.mark.parametrize("tau", [0.1, 1.0, 4.0])
def test_closed_form_components_match_an_fft_convolution_with_earlier_pulses(tau):
    s = FlimSetting()
    irf = simulate(s, 3, seed=3)["irf"].astype(float)
    gate = s.gate_ns
    period = 200 * gate                                   # a period inside the window: the cutoff is tested too
    got = components(irf, np.full(3, tau), gate, period)
    want = _fft_reference(irf, tau, gate, period)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * want.max())   # float64 FFT round-off
    assert (got[:, 200:] == 0).all()


def test_noiseless_decay_slope_recovers_tau():
    s = FlimSetting(period_ns=1e6)
    irf = simulate(s, 1, seed=3)["irf"].astype(float)
    for tau in (0.3, 1.0, 2.5):
        rate = expected_rates(irf, tau, tau, 1.0, s.gate_ns, s.period_ns)[0]
        tail = np.arange(60, min(250, 60 + int(4 * tau / s.gate_ns)))
        slope = np.polyfit(tail * s.gate_ns, np.log(rate[tail]), 1)[0]
        assert abs(-1 / slope - tau) / tau < 0.01


def test_torch_forward_and_its_derivative_match_numpy():
    from domains.spectra.fit_fast import Forward
    s = FlimSetting()
    irf = simulate(s, 8, seed=4)["irf"]
    tau = np.geomspace(0.1, 10, 5)[None].repeat(8, 0)
    c, dc = components(irf.astype(float), tau, s.gate_ns, s.period_ns, deriv=True)
    fwd = Forward(irf, s.gate_ns, s.period_ns)
    ct, dct = fwd(torch.tensor(tau), deriv=True)
    np.testing.assert_allclose(ct.numpy(), c, rtol=0, atol=1e-12 * c.max())
    np.testing.assert_allclose(dct.numpy(), dc, rtol=0, atol=1e-12 * np.abs(dc).max())
    step = 1e-6                                            # central difference in log tau
    fd = (components(irf.astype(float), tau * np.exp(step), s.gate_ns, s.period_ns)
          - components(irf.astype(float), tau * np.exp(-step), s.gate_ns, s.period_ns)) / (2 * step)
    np.testing.assert_allclose(dc, fd, rtol=0, atol=1e-6 * np.abs(dc).max())


def test_instrument_family_draws_stay_in_range_and_ood_irfs_are_wider():
    fam = InstrumentFamily()
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = fam.draw(rng)
        assert 64 <= d["gates"] <= 512 and 25 <= d["gate_ps"] <= 200 and 12.5 <= d["period_ns"] <= 50
        assert d["irf_center_ns"] <= 0.3 * d["gates"] * d["gate_ps"] / 1000
    s = FlimSetting(irf_fwhm_ps=(80.0, 200.0))             # the fixed presets' IRF widths
    fwhm = lambda irf: (irf > irf.max(1, keepdims=True) / 2).sum(1) * s.gate_ps  # noqa: E731
    train = simulate(s, 500, seed=4)["irf"]
    ood = simulate(s, 500, seed=4, shapes=("gamma_wide",))["irf"]
    assert np.median(fwhm(ood)) > 1.4 * np.median(fwhm(train))
    assert 250 - 2 * s.gate_ps < np.median(fwhm(ood)) < 450 + 2 * s.gate_ps       # documented 250-450 ps
    with pytest.raises(ValueError, match="unknown IRF shape"):
        simulate(s, 2, seed=0, shapes=("square",))
    assert "gamma_wide" in ALL_SHAPES and "gamma_wide" not in s.irf_shapes


def test_prior_median_is_the_median_of_prior_draws():
    s = FlimSetting(tau1=(0.2, 0.5), tau2=(2.0, 3.0), log_tau=False, mono_fraction=0.0)
    med = prior_median(s)
    assert abs(med["tau1"] - 0.35) < 0.01 and abs(med["tau2"] - 2.5) < 0.01 and abs(med["a"] - 0.5) < 0.01


def test_bins_cover_the_nanosecond_axis_and_gates_split_by_overlap():
    from domains.spectra.features import bin_edges, coverage, projection
    edges = bin_edges(64)
    assert len(edges) == 65 and np.all(np.diff(edges) > 0)
    for gates, gate in ((256, 0.0489), (139, 0.09697), (64, 0.2)):
        proj = projection(gates, gate, 1.0, edges)
        inside = (np.arange(gates) + 1) * gate - 1.0 <= edges[-1]
        np.testing.assert_allclose(proj[inside, :64].sum(1), 1, rtol=0, atol=1e-5)   # float32 shares
    cover = coverage(139, 0.09697, 12.817, 1.16, edges)
    assert cover[1] == 1 and cover[-1] == 0 and ((cover >= 0) & (cover <= 1)).all()


def test_lifetime_tokens_are_binned_fractions_and_moments():
    from domains.spectra.features import Featurizer, bin_edges, peak_time
    s = FlimSetting()
    d = simulate(s, 64, seed=11)
    meta = {"bin_edges": bin_edges(64), "patch": 16}
    counts, irf = torch.from_numpy(d["counts"].astype(np.float32)), torch.from_numpy(d["irf"])
    t_ref = peak_time(irf, s.gate_ns)
    feats = Featurizer(meta, s.gates, s.gate_ns, s.period_ns, t_ref)
    tokens, scalars = feats(counts, irf)
    assert tokens.shape == (64, 4, 48) and scalars.shape == (64, 14)
    from domains.spectra.features import projection
    share = d["counts"] @ projection(s.gates, s.gate_ns, t_ref, meta["bin_edges"])[:, :64].astype(float)
    frac = share / d["counts"].sum(1, keepdims=True)
    # float32 tokens against a float64 reference: values reach ~8, float32 keeps ~7 digits -> atol 1e-5
    np.testing.assert_allclose(tokens[:, :, :16].reshape(64, 64).numpy() ** 2, frac * 64 / 8, rtol=1e-4, atol=1e-5)
    # log10 of the photon count, centred: float32 against float64, values near 0 -> an absolute tolerance
    np.testing.assert_allclose(scalars[:, 0].numpy(), np.log10(d["counts"].sum(1)) - 2.5, rtol=0, atol=1e-5)
    delay = scalars[:, 1].numpy()                          # decay delay grows with the mean lifetime
    assert np.corrcoef(delay, d["a"] * d["tau1"] ** 2 + (1 - d["a"]) * d["tau2"] ** 2)[0, 1] > 0.8
