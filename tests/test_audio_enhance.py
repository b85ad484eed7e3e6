"""Enhancement: the STFT identity path, librosa/torch agreement, anti-wrapping losses, chunked overlap-add equal
to whole-file processing, metric sanity, and the baselines."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from domains.audio import baselines as B
from domains.audio import metrics as M
from domains.audio import noise_profile as NP
from domains.audio import spectral as S
from domains.audio import streaming as ST
from domains.audio.enhance_model import SpeechEnhancer, block_lengths, from_patches, to_patches
from domains.audio.losses import anti_wrap, enhancement_loss, phase_losses

ENC = {"d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.0, "attention": "sdpa", "rotary": True, "max_len": 512}


def speechlike(n: int, sr: int = 8000, seed: int = 0) -> np.ndarray:
    """Harmonic bursts with pauses: voiced-speech-like energy PESQ and STOI accept."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = (np.sin(2 * np.pi * 1.5 * t) > -0.2).astype(float) * (0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2)
    return (0.2 * x * envelope + 1e-3 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("sr", [8000, 16000])
def test_identity_path_reconstructs_the_input(sr):
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, sr + 37))).to(torch.float64) * 0.1
    frames = S.frame_setup(sr)
    y = S.identity(x, frames["n_fft"], frames["hop"])
    torch.testing.assert_close(y, x, atol=1e-9, rtol=0)


def test_model_stft_matches_librosa():
    import librosa
    x = np.random.default_rng(1).standard_normal(4000)
    frames = S.frame_setup(8000)
    ours = S.stft(torch.from_numpy(x)[None], frames["n_fft"], frames["hop"])[0].numpy()
    ref = librosa.stft(x, n_fft=frames["n_fft"], hop_length=frames["hop"], window="hann", center=True)
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_patches_round_trip():
    x = torch.randn(2, 9, 129, 3)
    back = from_patches(to_patches(x, 2, 4), 2, 4, 9, 129)
    torch.testing.assert_close(back, x)


def test_block_lengths_follow_absolute_boundaries():
    assert block_lengths(100, 32, 0) == [32, 32, 32, 4]
    assert block_lengths(100, 32, 16) == [16, 32, 32, 20]
    assert sum(block_lengths(7, 32, 16)) == 7


def test_anti_wrapping_ignores_whole_turns():
    x = torch.tensor([0.0, 2 * math.pi, -4 * math.pi, 0.3, 0.3 + 2 * math.pi, math.pi - 0.01])
    torch.testing.assert_close(anti_wrap(x), torch.tensor([0.0, 0.0, 0.0, 0.3, 0.3, math.pi - 0.01]), atol=1e-5, rtol=0)
    ref = torch.rand(2, 5, 7) * 6 - 3
    turned = ref + 2 * math.pi * torch.randint(-3, 4, ref.shape)
    assert all(float(v) < 1e-4 for v in phase_losses(turned, ref).values())
    assert float(phase_losses(ref + 0.5, ref)["ip"]) == pytest.approx(0.5, abs=1e-5)


def test_loss_returns_components_and_trains_both_decoders():
    torch.manual_seed(0)
    model = SpeechEnhancer(8000, ENC, n_blocks=1, block_tokens=8)
    clean = torch.from_numpy(speechlike(4000))[None].repeat(2, 1)
    batch = {"noisy": clean + 0.05 * torch.randn_like(clean), "clean": clean}
    total, parts = enhancement_loss(model(batch), batch, model.n_fft, model.hop)
    assert set(parts) == {"magnitude", "complex", "phase", "waveform", "consistency"}
    assert all(math.isfinite(v) and v >= 0 for v in parts.values())
    total.backward()
    for name in ("mag_decoder.out.weight", "pha_decoder.out.weight", "blocks.0.time.blocks.0.attn.qkv.weight"):
        grad = dict(model.named_parameters()).get(name)
        if grad is not None:
            assert grad.grad is not None and float(grad.grad.abs().sum()) > 0, name
    assert model.mag_decoder.out.weight.grad.abs().sum() > 0 and model.pha_decoder.out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("noise_features", [False, True], ids=["plain", "noise-features"])
@pytest.mark.parametrize("length,channels,chunk", [(8000 * 9 + 123, 1, 1.0), (8000 * 5 + 1, 2, 0.5), (4000, 1, 0.5)])
def test_chunked_overlap_add_equals_whole_file(length, channels, chunk, noise_features):
    torch.manual_seed(0)
    model = SpeechEnhancer(8000, ENC, n_blocks=2, block_tokens=8, noise_features=noise_features).eval()
    x = np.stack([speechlike(length, seed=c) for c in range(channels)], 1)
    x += 0.05 * np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    gain = ST.level_gain(x)
    # the whole file's noise profile, as the streaming pass computes it (chunks must not see only their own)
    noise = torch.from_numpy(NP.profile(lambda a, b: x[a:b], length, model.n_fft, model.hop, gain))
    whole = (model.enhance(torch.from_numpy(x.T.copy()) * gain, noise if noise_features else None) / gain).numpy().T
    chunked = ST.enhance_array(model, x, chunk)
    assert ST.plan(model, chunk)["core"] < length or length == 4000
    np.testing.assert_allclose(chunked, whole, atol=1e-5 * np.abs(whole).max())
    mono = ST.enhance_array(model, x[:, 0], chunk)
    assert mono.shape == (length,)


def test_noise_profile_streams_exactly_and_matches_percentiles():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((20001, 2)) * [1.0, 0.1]).astype(np.float32)
    whole = NP.profile(lambda a, b: x[a:b], len(x), 256, 64)
    blocks = NP.quantiles(NP.histogram(lambda a, b: x[a:b], len(x), 256, 64, block_frames=7))
    np.testing.assert_array_equal(blocks, whole)                # counts add up exactly, whatever the blocks
    assert whole.shape == (2, len(NP.QUANTILES), 129)
    window = torch.hann_window(256, dtype=torch.float64)
    spec = torch.stft(torch.from_numpy(x.T.astype(np.float64)), 256, 64, 256, window, center=True, pad_mode="constant",
                      return_complex=True)
    want = np.percentile(spec.abs().square().numpy(), [100 * q for q in NP.QUANTILES], axis=2).transpose(1, 0, 2)
    assert np.abs(np.log10(whole / want)).max() < 0.05         # within the histogram's resolution (0.02 decades)
    assert np.all(np.diff(whole, axis=1) >= 0)                  # quantiles rise
    assert abs(np.log10(whole[0].mean() / whole[1].mean()) - 2) < 0.1   # 20 dB quieter channel: 100x less power


def test_ensemble_is_the_mean_of_its_members():
    torch.manual_seed(0)
    a, b = (SpeechEnhancer(8000, ENC, n_blocks=1, block_tokens=8).eval() for _ in range(2))
    x = torch.from_numpy(speechlike(3000))[None]
    torch.testing.assert_close(ST.Ensemble([a, b]).enhance(x), (a.enhance(x) + b.enhance(x)) / 2)


def test_metric_sanity():
    x = speechlike(16000)
    assert M.si_sdr(x, x) > 80
    assert M.si_sdr(x, 3.0 * x) > 80                          # scale-invariant
    noise = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    from domains.audio.noise import mix_at_snr
    noisy, _ = mix_at_snr(x, noise, 5.0)
    assert M.si_sdr(x, noisy) == pytest.approx(5.0, abs=0.3)
    assert M.pesq_score(x, x, 8000) == pytest.approx(4.549, abs=0.01)    # P.862 narrowband ceiling
    x16 = speechlike(32000, 16000)
    assert M.pesq_score(x16, x16, 16000) == pytest.approx(4.644, abs=0.01)   # P.862.2 wideband ceiling
    assert M.pesq_score(x, noisy, 8000) < 3.0
    assert M.stoi_score(x, x, 8000) == pytest.approx(1.0, abs=1e-6)
    assert M.stoi_score(x, noisy, 8000) < M.stoi_score(x, x, 8000)


@pytest.mark.parametrize("method", list(B.METHODS))
def test_baselines_remove_stationary_noise(method):
    x = speechlike(16000, seed=3)
    from domains.audio.noise import coloured_noise, mix_at_snr
    noisy, _ = mix_at_snr(x, coloured_noise("white", len(x), np.random.default_rng(4)), 5.0)
    outs = [B.enhance(method, noisy, 8000, params) for params in B.settings_grid(method)]
    assert all(o.shape == noisy.shape and np.isfinite(o).all() for o in outs)
    assert max(M.si_sdr(x, o) for o in outs) > M.si_sdr(x, noisy) + 1.0


def test_baseline_settings_come_from_the_grid_by_validation_pesq():
    x = [speechlike(12000, seed=s) for s in range(2)]
    from domains.audio.noise import coloured_noise, mix_at_snr
    noisy = [mix_at_snr(c, coloured_noise("pink", len(c), np.random.default_rng(7)), 5.0)[0] for c in x]
    best = B.choose_settings("spectral-subtraction", noisy, x, 8000)
    grid = B.settings_grid("spectral-subtraction")
    assert {k: v for k, v in best.items() if k != "val_pesq"} in grid
    scores = [np.mean([M.pesq_score(c, B.enhance("spectral-subtraction", n, 8000, g), 8000) for n, c in zip(noisy, x)])
              for g in grid]
    assert best["val_pesq"] == pytest.approx(max(scores))


def test_attenuation_limit_floors_every_bin_and_only_when_set():
    from domains.audio.atten_limit import gain_of
    torch.manual_seed(0)
    model = SpeechEnhancer(8000, ENC, n_blocks=1, block_tokens=8).eval()
    x = torch.from_numpy(speechlike(4000))[None]
    mag_c, _ = S.compress(S.stft(x, model.n_fft, model.hop))
    floor = gain_of(3.0) ** S.COMPRESS                      # 3 dB: a floor the untrained mask crosses
    with torch.no_grad():
        free = model.spectra(x)["mag"] / mag_c
        model.min_gain = gain_of(3.0)
        limited = model.spectra(x)["mag"] / mag_c
    assert (free < floor - 1e-3).any()                       # without the limit some bins go lower
    assert (limited >= floor - 1e-6).all()
    torch.testing.assert_close(limited, free.clamp_min(floor), atol=1e-6, rtol=0)


def test_attenuation_limit_rule_takes_the_best_score_ties_to_the_weaker_limit():
    from domains.audio.atten_limit import choose, gain_of, score
    assert gain_of(None) == 0.0 and gain_of(20) == pytest.approx(0.1)
    assert score(2.0, 0.9) == pytest.approx(2.0 / 0.5 + 0.9 / 0.03)
    study = [{"atten_limit_db": lim, "score": s} for lim, s in ((None, 30.0), (30.0, 31.0), (20.0, 31.0), (10.0, 29.0))]
    assert choose(study) == 30.0
    assert choose([{**r, "score": 1.0} for r in study]) is None
