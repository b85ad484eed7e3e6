"""Audio data: exact SNR mixing, noise colours, reverberation, prompt folds and the no-leak splits."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.audio import corpus as C
from domains.audio import noise as N

HAVE_PROMPTS = (C.DEFAULT_ROOT / "en_US_f_Allison").is_dir()
needs_prompts = pytest.mark.skipif(not HAVE_PROMPTS, reason="Debian's asterisk-core-sounds-*-wav packages are not "
                                   "installed (apt-get install asterisk-core-sounds-en-wav ...)")


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 20.0])
@pytest.mark.parametrize("kind", ["white", "pink", "brown", "blue"])
def test_mixing_hits_the_requested_snr_exactly(snr, kind):
    rng = np.random.default_rng(0)
    speech = (rng.standard_normal(8000) * np.hanning(8000)).astype(np.float32) * 0.3
    noise = N.coloured_noise(kind, 8000, rng)
    noisy, scaled = N.mix_at_snr(speech, noise, snr)
    assert N.snr_db(speech, scaled) == pytest.approx(snr, abs=1e-4)
    np.testing.assert_allclose(noisy - speech, scaled, atol=1e-6)


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(1)
    for kind, slope in N.COLOUR_EXPONENT.items():
        x = N.coloured_noise(kind, 1 << 16, rng)
        power = np.abs(np.fft.rfft(x)) ** 2
        f = np.arange(len(power))
        band = (f > 100) & (f < len(f) - 100)
        fitted = np.polyfit(np.log(f[band]), np.log(power[band] + 1e-20), 1)[0]
        assert fitted == pytest.approx(slope, abs=0.1), kind


def test_mixing_rejects_silent_noise():
    with pytest.raises(ValueError, match="no energy"):
        N.mix_at_snr(np.ones(10, np.float32), np.zeros(10, np.float32), 0.0)


def test_degrade_is_seeded_and_bounded():
    clean = (np.sin(np.arange(16000) / 7) * 0.9).astype(np.float32)
    babble = [np.random.default_rng(k).standard_normal(4000).astype(np.float32) for k in range(3)]
    music = [np.random.default_rng(9).standard_normal(20000).astype(np.float32)]
    a = N.degrade(clean, np.random.default_rng(5), (-5, 20), N.NOISE_KINDS, music, babble, 0.5, 8000)
    b = N.degrade(clean, np.random.default_rng(5), (-5, 20), N.NOISE_KINDS, music, babble, 0.5, 8000)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[2] == b[2]
    assert np.abs(a[0]).max() <= 0.99 + 1e-6
    assert a[0].shape == a[1].shape == clean.shape


def test_room_impulse_response_starts_at_the_direct_path_and_decays():
    h = N.room_impulse_response(8000, np.random.default_rng(0))
    assert np.argmax(np.abs(h)) == 0 and np.abs(h).max() == pytest.approx(1.0)
    tail = h[len(h) // 2:]
    assert np.sqrt(np.mean(tail ** 2)) < 0.25 * np.sqrt(np.mean(h[: len(h) // 8] ** 2))
    wet, early = N.reverberate(np.random.default_rng(1).standard_normal(4000).astype(np.float32), h, 8000)
    assert wet.shape == early.shape == (4000,)


def test_prompt_folds_are_seeded_hashes_of_the_text():
    names = [f"digits/{k}" for k in range(2000)]
    folds = [C.prompt_fold(n, 0, 0.1, 0.2) for n in names]
    assert folds == [C.prompt_fold(n, 0, 0.1, 0.2) for n in names]
    share = {f: folds.count(f) / len(folds) for f in ("train", "val", "test")}
    assert share["test"] == pytest.approx(0.2, abs=0.03) and share["val"] == pytest.approx(0.1, abs=0.03)
    assert folds != [C.prompt_fold(n, 1, 0.1, 0.2) for n in names]


def test_speaker_is_the_last_field_so_allison_is_one_speaker():
    assert C.speaker_of("en_US_f_Allison") == C.speaker_of("es_MX_f_Allison") == "Allison"


def test_missing_prompt_folder_names_the_packages(tmp_path):
    from core.errors import UserError
    with pytest.raises(UserError, match="asterisk-core-sounds-en-wav"):
        C.list_prompts(tmp_path / "nowhere")
    with pytest.raises(UserError, match="8000"):
        C.list_prompts(tmp_path, 44100)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    if not HAVE_PROMPTS:
        pytest.skip("Debian's asterisk-core-sounds-*-wav packages are not installed")
    from core.domain import get_domain
    dom = get_domain("audio")
    out = tmp_path_factory.mktemp("audio_prep")
    cfg = dom.config(None, ["data.max_per_voice=60", "enhance.n_test=4", "enhance.n_val=3"])
    dom.task_of(cfg).prepare(cfg, out)
    return out, cfg


@needs_prompts
def test_splits_share_no_voice_and_no_prompt_text(prepared):
    out, cfg = prepared
    m = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    train, test = m[m.enhance_fold == "train"], m[m.enhance_fold == "test"]
    assert len(train) and len(test)
    assert not set(train.speaker) & set(test.speaker)
    assert set(test.speaker) == set(cfg["data.test_speakers"])
    for a in ("train", "val", "test"):             # prompt text: one fold in every language
        for b in ("train", "val", "test"):
            if a != b:
                assert not set(m.prompt[m.prompt_fold == a]) & set(m.prompt[m.prompt_fold == b])
    assert not set(train.prompt) & set(test.prompt)
    assert not set(m.prompt[m.enhance_fold == "val"]) & set(test.prompt)
    assert not m.prompt.str.contains("silence/|beep|tone").any()


@needs_prompts
def test_test_mixtures_are_the_same_clip_at_every_snr(prepared):
    from domains.audio.prepare import TEST, load_mixtures
    out, cfg = prepared
    mix = load_mixtures(out / TEST)
    snrs = [float(s) for s in cfg["enhance.test_snrs"]]
    assert sorted(set(mix["snr"].tolist())) == sorted(snrs)
    for k in range(0, len(mix["noisy"]), len(snrs)):
        clips = mix["clip"][k:k + len(snrs)]
        assert len(set(clips.tolist())) == 1
        for j, snr in enumerate(snrs):
            clean, noisy = mix["clean"][k + j], mix["noisy"][k + j]
            assert N.snr_db(clean, noisy - clean) == pytest.approx(snr, abs=0.01)


def test_own_folder_without_the_prompt_layout_says_what_training_reads(tmp_path):
    from core.errors import UserError
    from domains.audio.corpus import list_prompts
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "bark.flac").write_bytes(b"")
    with pytest.raises(UserError, match=r"no \.wav prompts in .*voice folders \(found files \['\.flac'\]\); "
                                        r"data.source=asterisk reads this prompt layout .* set data.source=folders"):
        list_prompts(tmp_path, 8000)
