"""Degradations: coloured noise, music, babble, reverberation, and mixing at an exact SNR (all seeded).

SNR is defined over the whole clip: 10 log10(sum s^2 / sum n^2), with the noise scaled so that it holds to
float precision. Reverberation uses a room impulse response from pyroomacoustics' image method (a random
shoebox room, source and microphone) when it imports, else an exponentially decaying noise tail with the
room's RT60 (Polack's statistical model). The enhancement target of a reverberant clip is the speech through
the first 50 ms of the response (direct path + early reflections, as in dereverberation work): late
reverberation counts as noise.
"""
from __future__ import annotations

import numpy as np

NOISE_KINDS = ("white", "pink", "brown", "blue", "music", "babble")
COLOUR_EXPONENT = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0}   # power ~ f^exponent
EARLY_MS = 50.0


def coloured_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as f^exponent (pink -1, brown -2, blue +1), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (COLOUR_EXPONENT[kind] / 2.0)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def excerpt(track: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random n-sample excerpt of a (looped, if shorter) noise source."""
    if len(track) < n:
        track = np.tile(track, n // max(len(track), 1) + 1)
    start = int(rng.integers(0, len(track) - n + 1))
    return track[start:start + n].astype(np.float32)


def babble(pool: list[np.ndarray], n: int, rng: np.random.Generator, talkers: tuple[int, int] = (3, 6)) -> np.ndarray:
    """Several prompts of other talkers, each at unit RMS, summed: the cocktail-party noise."""
    out = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(talkers[0], talkers[1] + 1))):
        clip = pool[int(rng.integers(len(pool)))]
        x = excerpt(clip, n, rng)
        out += x / (np.sqrt(np.mean(x ** 2)) + 1e-8)
    return out


def make_noise(kind: str, n: int, rng: np.random.Generator, music: list[np.ndarray],
               babble_pool: list[np.ndarray]) -> np.ndarray:
    if kind in COLOUR_EXPONENT:
        return coloured_noise(kind, n, rng)
    if kind == "music":
        return excerpt(music[int(rng.integers(len(music)))], n, rng)
    if kind == "babble":
        return babble(babble_pool, n, rng)
    raise ValueError(f"unknown noise kind {kind!r}; known: {NOISE_KINDS}")


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, scaled noise) with 10 log10(sum speech^2 / sum scaled^2) == snr_db."""
    ps = float(np.sum(np.asarray(speech, np.float64) ** 2))
    pn = float(np.sum(np.asarray(noise, np.float64) ** 2))
    if pn <= 0:
        raise ValueError("noise has no energy: cannot reach an SNR")
    scaled = np.asarray(noise, np.float64) * np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return (speech + scaled).astype(np.float32), scaled.astype(np.float32)


def snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    ps = np.sum(np.asarray(speech, np.float64) ** 2)
    return float(10 * np.log10(ps / np.sum(np.asarray(noise, np.float64) ** 2)))


def room_impulse_response(sample_rate: int, rng: np.random.Generator,
                          rt60: tuple[float, float] = (0.2, 0.8)) -> np.ndarray:
    """A synthetic RIR (peak-normalized, starting at the direct path)."""
    t60 = float(rng.uniform(*rt60))
    try:
        import pyroomacoustics as pra
        dims = rng.uniform([3.0, 3.0, 2.4], [9.0, 7.0, 3.5])
        e_abs, max_order = pra.inverse_sabine(t60, dims)
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(e_abs), max_order=min(max_order, 12))
        src = rng.uniform(0.5, dims - 0.5)
        mic = rng.uniform(0.5, dims - 0.5)
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        h = np.asarray(room.rir[0][0], np.float64)
    except ImportError:
        n = int(t60 * sample_rate)
        t = np.arange(n) / sample_rate
        h = rng.standard_normal(n) * np.exp(-6.9 * t / t60)   # -60 dB at t60
        h[0] = 1.0
    h = h[int(np.argmax(np.abs(h))):]                       # start at the direct path: no added delay
    return (h / (np.abs(h).max() + 1e-12)).astype(np.float32)


def reverberate(speech: np.ndarray, rir: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(reverberant speech, early-reverberation target), both as long as the input."""
    from scipy.signal import fftconvolve
    early = rir.copy()
    early[int(EARLY_MS / 1000 * sample_rate):] = 0.0
    n = len(speech)
    return (fftconvolve(speech, rir)[:n].astype(np.float32), fftconvolve(speech, early)[:n].astype(np.float32))


def degrade(clean: np.ndarray, rng: np.random.Generator, snr_range: tuple[float, float], kinds: tuple[str, ...],
            music: list[np.ndarray], babble_pool: list[np.ndarray], reverb_prob: float, sample_rate: int,
            snr: float | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """One training/test example: (noisy, target, info). The target is the clean speech, or its early
    reverberation when the clip was reverberated."""
    kinds = tuple(k for k in kinds if (k != "music" or music) and (k != "babble" or babble_pool))
    target = clean
    reverb = bool(rng.random() < reverb_prob)
    if reverb:
        clean, target = reverberate(clean, room_impulse_response(sample_rate, rng), sample_rate)
    kind = kinds[int(rng.integers(len(kinds)))]
    snr = float(rng.uniform(*snr_range)) if snr is None else float(snr)
    noise = make_noise(kind, len(clean), rng, music, babble_pool)
    noisy, _ = mix_at_snr(clean, noise, snr)
    # keep the mixture inside [-1, 1] (a file could not hold more) with the same gain on the target
    peak = float(np.abs(noisy).max())
    if peak > 0.99:
        noisy, target = noisy * (0.99 / peak), target * (0.99 / peak)
    return noisy.astype(np.float32), target.astype(np.float32), {"noise": kind, "snr": snr, "reverb": reverb}
