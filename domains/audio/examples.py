"""The committed prediction examples (data/audio/noisy/): test-voice prompts (never in training) mixed with
noise, in several formats, rates and channel layouts, so the prediction path is exercised as a user's folder
would exercise it. Regenerate with `python -m domains.audio.examples data/audio/noisy`."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from domains.audio import corpus as C
from domains.audio import noise as N

# (voice, prompt, noise, SNR dB, sample rate, channels, file name)
# (prompts of the test fold for seed 0: tests/test_audio_pipeline.py checks it)
EXAMPLES = [("fr_CA_f_June", "vm-sorry", "babble", 5.0, 8000, 1, "june_babble_5db.wav"),
            ("it_IT_m_Carlo", "vm-sorry", "music", 0.0, 8000, 1, "carlo_music_0db.wav"),
            ("fr_CA_f_June", "dir-nomatch", "pink", 10.0, 16000, 2, "june_pink_10db_stereo16k.flac"),
            ("it_IT_m_Carlo", "dir-nomatch", "white", 5.0, 22050, 1, "carlo_white_5db_22k.ogg")]


def make_examples(out_dir: Path, seed: int = 0) -> list[Path]:
    import librosa
    import soundfile as sf
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    music = list(C.music_tracks(8000).values())
    babble = [C.load_prompt(p, 8000) for p in [p for p in C.list_prompts() if p.speaker in ("June", "Carlo")][::50]]
    written = []
    for voice, prompt, kind, snr, sr, channels, name in EXAMPLES:
        path = C.DEFAULT_ROOT / voice / f"{prompt}.wav"
        clean = C.load_prompt(C.Prompt(voice, C.speaker_of(voice), prompt, path), 8000)
        noisy, _ = N.mix_at_snr(clean, N.make_noise(kind, len(clean), rng, music, babble), snr)
        noisy = 0.9 * noisy / np.abs(noisy).max()
        if sr != 8000:
            noisy = librosa.resample(noisy, orig_sr=8000, target_sr=sr)
        data = np.stack([noisy * (1 - 0.3 * c) for c in range(channels)], 1)
        sf.write(out_dir / name, data, sr)
        written.append(out_dir / name)
    return written


if __name__ == "__main__":
    print(make_examples(Path(sys.argv[1] if len(sys.argv) > 1 else "data/audio/noisy")))
