"""Prepared data: the trimmed prompts, their folds, and the fixed (seeded) validation and test mixtures.

    manifest.csv      one row per prompt: voice, speaker, prompt, path, seconds, prompt_fold, enhance_fold
    clean.npz         every prompt's trimmed audio (int16, concatenated, with offsets)
    enhance_val.npz   validation mixtures (training voices, validation prompts) at each test SNR
    enhance_test.npz  test mixtures (unseen voices, test prompts) at each test SNR: the same clip and noise
                      excerpt at every SNR, so SNR buckets differ in SNR only

Folds. Prompt text: a seeded hash of the prompt name -> train / val / test, the same in every language.
Enhancement: test voices (data.test_speakers) contribute only test-prompt clips (and babble from their other
prompts); training voices contribute train-prompt clips (training) and val-prompt clips (validation); no voice
and no prompt text is shared between training and test. Classification: every voice, folds by prompt text.
Training mixtures are drawn afresh every epoch (domains.audio.tasks); noise sources are split too: music
tracks are cut in time, babble comes from the same side of the split as the target voice.

Your own labelled recordings (`data.source: folders`, classification only): `data.root/<label>/...`, any format
and rate (resampled to data.sample_rate), folds stratified by label (corpus.label_folds) or by the groups
data.group_pattern names (corpus.group_folds); no mixtures are made.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError
from core.io import atomic_path, file_sha256
from domains.audio import corpus as C
from domains.audio import noise as N

log = logging.getLogger("sciformer.audio")
MANIFEST, CLEAN, VAL, TEST = "manifest.csv", "clean.npz", "enhance_val.npz", "enhance_test.npz"


def trim(audio: np.ndarray, sample_rate: int, top_db: float, keep_s: float, max_s: float) -> np.ndarray:
    import librosa
    if not np.any(audio):
        return audio[:0]
    _, (a, b) = librosa.effects.trim(audio, top_db=top_db)
    keep = int(keep_s * sample_rate)
    a, b = max(0, a - keep), min(len(audio), b + keep)
    return audio[a:min(b, a + int(max_s * sample_rate))]


def save_arrays(path: Path, arrays: list[np.ndarray], **extra) -> None:
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, audio=np.concatenate(arrays) if arrays else np.zeros(0, np.float32), offsets=offsets, **extra)


def load_arrays(path: Path, key: str = "audio") -> tuple[list[np.ndarray], dict]:
    with np.load(path, allow_pickle=False) as f:
        d = {k: f[k] for k in f.files}
    o = d["offsets"]
    data = d[key]
    scale = 1 / 32767 if data.dtype == np.int16 else 1.0
    return [(data[o[i]:o[i + 1]] * scale).astype(np.float32) for i in range(len(o) - 1)], d


def subsample(prompts: list[C.Prompt], per_voice: int) -> list[C.Prompt]:
    """An evenly spaced subset of each voice's prompts (smoke runs and tests)."""
    out = []
    for voice in sorted({p.voice for p in prompts}):
        mine = [p for p in prompts if p.voice == voice]
        out += mine[::max(1, len(mine) // per_voice)][:per_voice]
    return out


def music_split(tracks: dict[str, np.ndarray], folds: list[float]) -> dict[str, list[np.ndarray]]:
    a, b = folds[0], folds[0] + folds[1]
    return {"train": [t[:int(a * len(t))] for t in tracks.values()],
            "val": [t[int(a * len(t)):int(b * len(t))] for t in tracks.values()],
            "test": [t[int(b * len(t)):] for t in tracks.values()]}


def prepare(cfg, out_dir: Path) -> dict[str, str]:
    out_dir = Path(out_dir)
    sr, seed = int(cfg["data.sample_rate"]), int(cfg["seed"])
    own = cfg["data.source"] == "folders"
    fractions = float(cfg["data.val_fraction"]), float(cfg["data.test_fraction"])
    prompts = C.list_labelled(cfg["data.root"]) if own else C.list_prompts(cfg["data.root"], sr)
    test_speakers = set() if own else set(cfg["data.test_speakers"])
    unknown = test_speakers - {p.speaker for p in prompts}
    if unknown:
        raise UserError(f"data.test_speakers: {sorted(unknown)} not among the speakers found under "
                        f"{cfg['data.root']} ({sorted({p.speaker for p in prompts})})")
    per_voice = int(cfg["data.max_per_voice"])
    if per_voice:
        prompts = subsample(prompts, per_voice)
    raw = C.load_labelled(prompts, sr) if own else C.load_prompts(prompts, sr)
    clips = [trim(a, sr, float(cfg["data.trim_db"]), float(cfg["data.trim_keep_s"]), float(cfg["data.max_seconds"]))
             for a in raw]
    keep = [i for i, a in enumerate(clips) if len(a) >= int(0.25 * sr)]   # drops empty/blip files
    if own and len(keep) < len(clips):
        dropped = [prompts[i].name for i in sorted(set(range(len(clips))) - set(keep))]
        log.warning("left out %d recordings shorter than 0.25 s after trimming silence below peak - %g dB "
                    "(data.trim_db): %s%s", len(dropped), float(cfg["data.trim_db"]), ", ".join(dropped[:5]),
                    " ..." if len(dropped) > 5 else "")
    prompts, clips = [prompts[i] for i in keep], [clips[i] for i in keep]
    if own:
        pattern = str(cfg["data.group_pattern"])
        folds = C.group_folds(prompts, pattern, seed, *fractions) if pattern else C.label_folds(prompts, seed,
                                                                                                *fractions)
    else:
        folds = [C.prompt_fold(p.name, seed, *fractions) for p in prompts]
    enh = ["none"] * len(prompts) if own else [   # own recordings: enhancement trains on the prompts only
        (f if f == "test" else "babble") if p.speaker in test_speakers else (f if f != "test" else "none")
        for p, f in zip(prompts, folds)]
    manifest = pd.DataFrame({"voice": [p.voice for p in prompts], "speaker": [p.speaker for p in prompts],
                             "prompt": [p.name for p in prompts], "path": [str(p.path) for p in prompts],
                             "seconds": [len(a) / sr for a in clips], "prompt_fold": folds, "enhance_fold": enh})
    with atomic_path(out_dir / MANIFEST) as tmp:
        manifest.to_csv(tmp, index=False)
    save_arrays(out_dir / CLEAN, [np.round(np.clip(a, -1, 1) * 32767).astype(np.int16) for a in clips],
                sample_rate=np.array(sr))

    if own:   # the user's files by content (the packages' prompts are fixed by their Debian version)
        digest = hashlib.sha256("".join(f"{p.name}:{file_sha256(p.path)}" for p in prompts).encode()).hexdigest()
        log.info("%d labelled recordings, %d labels; train / val / test %d / %d / %d (stratified by label)",
                 len(prompts), len({p.voice for p in prompts}), *(folds.count(f) for f in ("train", "val", "test")))
        return {"labelled-clips": digest}
    music = music_split(C.music_tracks(sr), list(cfg["data.music_folds"]))
    kinds = tuple(cfg["data.noise_kinds"])
    rng = np.random.default_rng(seed + 1)
    long_enough = manifest.seconds >= float(cfg["enhance.min_test_seconds"])
    for name, fold, babble_fold, music_fold, n in ((VAL, "val", "val", "val", "enhance.n_val"),
                                                  (TEST, "test", "babble", "test", "enhance.n_test")):
        idx = np.flatnonzero((manifest.enhance_fold == fold) & long_enough)
        idx = np.sort(rng.permutation(idx)[:int(cfg[n])])
        if len(idx) == 0:
            raise UserError(f"no {fold} clips for enhancement: check data.test_speakers and the fold fractions")
        pool_idx = np.flatnonzero(manifest.enhance_fold == babble_fold)
        write_mixtures(out_dir / name, clips, idx, pool_idx, music[music_fold], kinds,
                       [float(s) for s in cfg["enhance.test_snrs"]], sr, rng)
    digest = hashlib.sha256("".join(f"{p.path}:{p.path.stat().st_size}" for p in prompts).encode()).hexdigest()
    return {"asterisk-prompts": digest}


def write_mixtures(path: Path, clips: list[np.ndarray], idx: np.ndarray, pool_idx: np.ndarray,
                   music: list[np.ndarray], kinds: tuple[str, ...], snrs: list[float], sr: int,
                   rng: np.random.Generator) -> None:
    """Each clip gets one noise kind (cycling through `kinds`, so kinds are balanced) and one noise excerpt,
    mixed at every SNR."""
    noisy, clean, meta = [], [], {"clip": [], "snr": [], "kind": []}
    for j, i in enumerate(idx):
        kind = kinds[j % len(kinds)]
        pool = [clips[k] for k in pool_idx if k != i]
        noise = N.make_noise(kind, len(clips[i]), rng, music, pool)
        for snr in snrs:
            mix, _ = N.mix_at_snr(clips[i], noise, snr)
            peak = max(1.0, float(np.abs(mix).max()) / 0.99)   # headroom: the same gain on both
            noisy.append(mix / peak)
            clean.append(clips[i] / peak)
            meta["clip"].append(int(i))
            meta["snr"].append(snr)
            meta["kind"].append(kind)
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in noisy])]).astype(np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, noisy=np.concatenate(noisy).astype(np.float32), clean=np.concatenate(clean).astype(np.float32),
                 offsets=offsets, clip=np.array(meta["clip"]), snr=np.array(meta["snr"]), kind=np.array(meta["kind"]))


def load_mixtures(path: Path) -> dict:
    noisy, d = load_arrays(path, "noisy")
    clean, _ = load_arrays(path, "clean")
    return {"noisy": noisy, "clean": clean, "clip": d["clip"], "snr": d["snr"], "kind": d["kind"]}


def load_prepared(prepared: Path) -> tuple[pd.DataFrame, list[np.ndarray], int]:
    prepared = Path(prepared)
    if not (prepared / MANIFEST).exists():
        raise UserError(f"{prepared}: no {MANIFEST}; run `sciformer prepare -d audio -o {prepared}` first")
    clips, d = load_arrays(prepared / CLEAN)
    return pd.read_csv(prepared / MANIFEST, keep_default_na=False), clips, int(d["sample_rate"])
