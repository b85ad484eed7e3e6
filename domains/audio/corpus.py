"""The speech corpus: Debian's Asterisk prompt packages (real recorded prompts, 5 voice/language folders).

    asterisk-core-sounds-{en,es,fr,it,ru}-wav    8 kHz 16-bit PCM (narrowband)
    asterisk-core-sounds-{en,es,fr,it,ru}-g722   the same prompts G.722-coded at 16 kHz (wideband; ffmpeg decodes)
    asterisk-moh-opsound-wav                     five music-on-hold tracks (real music noise)

A folder such as `es_MX_f_Allison` is language_REGION_sex_Speaker. Allison Smith recorded both the English and
the Spanish prompts (the packages' copyright file says so), so speakers are taken from the folder's last field:
an "unseen voice" split keeps en_US_f_Allison and es_MX_f_Allison on the same side.

Prompts are identified by their path inside the voice folder (`digits/1`): the same name is the same text
(translated) in every language, so a split by prompt name keeps a sentence out of training in every voice.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError

DEFAULT_ROOT = Path("/usr/share/asterisk/sounds")
MOH_ROOT = Path("/usr/share/asterisk/moh")
LANGS = ("en", "es", "fr", "it", "ru")
PACKAGES = (*(f"asterisk-core-sounds-{lang}-wav" for lang in LANGS),
            *(f"asterisk-core-sounds-{lang}-g722" for lang in LANGS), "asterisk-moh-opsound-wav", "ffmpeg")
# tones, beeps and the silence folder are not speech: they would teach "speech" that is a sine
NOT_SPEECH = re.compile(r"(^|/)(silence/|.*beep|.*tone)")
INSTALL_HINT = ("install Debian's prompt packages: apt-get install " + " ".join(PACKAGES)
                + " (or point data.root at a folder of <lang>_<REGION>_<sex>_<Speaker>/ prompt folders)")


@dataclass(frozen=True)
class Prompt:
    voice: str      # folder name, e.g. fr_CA_f_June (the classification label)
    speaker: str    # last field of the folder name (Allison for en and es)
    name: str       # path inside the voice folder without extension (digits/1): the prompt text's identity
    path: Path      # the .wav (8 kHz) or .g722 (16 kHz) file


def speaker_of(voice: str) -> str:
    return voice.split("_")[-1]


def list_prompts(root: Path | str = DEFAULT_ROOT, sample_rate: int = 8000) -> list[Prompt]:
    """Every speech prompt under root, sorted (voice, name). 8000 reads `.wav`, 16000 reads `.g722`."""
    root = Path(root)
    ext = {8000: ".wav", 16000: ".g722"}.get(sample_rate)
    if ext is None:
        raise UserError(f"data.sample_rate: {sample_rate} is not available from the prompt packages; use 8000 (wav) "
                        "or 16000 (G.722)")
    if not root.is_dir():
        raise UserError(f"{root}: prompt folder not found; {INSTALL_HINT}")
    prompts = []
    for voice_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(voice_dir.rglob(f"*{ext}")):
            name = f.relative_to(voice_dir).with_suffix("").as_posix()
            if not NOT_SPEECH.search(name):
                prompts.append(Prompt(voice_dir.name, speaker_of(voice_dir.name), name, f))
    if not prompts:
        kind = "wav" if ext == ".wav" else "g722"
        needed = " ".join(p for p in PACKAGES if kind in p or p == "ffmpeg")
        if root != DEFAULT_ROOT:   # the user's own folder: say what layout training reads, not only apt-get
            found = sorted({f.suffix.lower() for f in root.rglob("*") if f.is_file()})[:6]
            raise UserError(f"{root}: no {ext} prompts in <lang>_<REGION>_<sex>_<Speaker>/ voice folders (found "
                            f"files {found or 'none'}); data.source=asterisk reads this prompt layout ({ext} at "
                            f"data.sample_rate={sample_rate}); for your own labelled recordings in one folder per "
                            "label, set data.source=folders (domains/audio/README.md)")
        raise UserError(f"{root}: no {ext} prompts found; {INSTALL_HINT.replace(' '.join(PACKAGES), needed)}")
    return prompts


def list_labelled(root: Path | str) -> list[Prompt]:
    """Your own labelled clips (`data.source: folders`): `root/<label>/**/<file>` in any format libsndfile reads;
    the label is the subfolder's name, and a clip's identity is its path inside root."""
    from domains.audio.newdata import READABLE, UNREADABLE_AUDIO
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data.root: {root} is not a folder; with data.source=folders it holds one subfolder per "
                        "label, each with that label's recordings")
    clips, unusable = [], []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(p for p in label_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
            if f.suffix.lower() in READABLE:
                name = f.relative_to(root).as_posix()
                clips.append(Prompt(label_dir.name, label_dir.name, name, f))
            elif f.suffix.lower() in UNREADABLE_AUDIO:
                unusable.append(f.relative_to(root).as_posix())
    if unusable:
        more = " ..." if len(unusable) > 5 else ""
        raise UserError(f"{root}: {len(unusable)} recordings in a format libsndfile cannot read "
                        f"({', '.join(unusable[:5])}{more}); convert them (e.g. ffmpeg -i X X.flac) or move them "
                        "out (nothing was prepared)")
    labels = sorted({c.voice for c in clips})
    if len(labels) < 2:
        raise UserError(f"{root}: found {len(clips)} recordings in {len(labels)} label folder(s) "
                        f"({', '.join(labels) or 'none'}); classification needs at least 2 subfolders, one per label, "
                        f"each with recordings ({', '.join(sorted(READABLE))})")
    return clips


def label_folds(clips: list[Prompt], seed: int, val_fraction: float, test_fraction: float) -> list[str]:
    """'train' | 'val' | 'test' per clip, stratified by label: within each label the clips are ordered by a seeded
    hash of their path (a file's place does not depend on the listing order or the other files' names) and the
    first round(n * test_fraction) go to test, the next round(n * val_fraction) to validation, at least one each."""
    by_label: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        by_label.setdefault(c.voice, []).append(i)
    small = {k: len(v) for k, v in by_label.items() if len(v) < 3}
    if small:
        raise UserError("labels with fewer than 3 usable recordings (one each for train, validation and test): "
                        + ", ".join(f"{k} ({n})" for k, n in sorted(small.items()))
                        + "; add recordings to those folders or move them out of data.root")
    folds = ["train"] * len(clips)
    for idx in by_label.values():
        order = sorted(idx, key=lambda i: hashlib.sha256(f"{seed}:{clips[i].name}".encode()).digest())
        n_test = min(max(1, round(len(idx) * test_fraction)), len(idx) - 2)      # leaves train and validation
        n_val = min(max(1, round(len(idx) * val_fraction)), len(idx) - n_test - 1)
        for i in order[:n_test]:
            folds[i] = "test"
        for i in order[n_test:n_test + n_val]:
            folds[i] = "val"
    return folds


def group_folds(clips: list[Prompt], pattern: str, seed: int, val_fraction: float,
                test_fraction: float) -> list[str]:
    """Folds by group (`data.group_pattern`): the regex's first group, searched in each recording's path inside
    its label folder, names recordings that stay on one side (a speaker, a session, a source clip); a group's
    fold is a seeded hash of its name (prompt_fold), the same for every label, as Speech Commands splits by
    speaker. Every label must still get training, validation and test recordings."""
    regex = re.compile(pattern)
    groups, unmatched = [], []
    for c in clips:
        found = regex.search(c.name.split("/", 1)[1])
        groups.append(found.group(1) if found and found.groups() else None)
        if groups[-1] is None:
            unmatched.append(c.name)
    if unmatched:
        raise UserError(f"data.group_pattern {pattern!r}: {len(unmatched)} recordings do not match it, or it has no "
                        f"(group) ({', '.join(unmatched[:5])}{' ...' if len(unmatched) > 5 else ''}); it is searched "
                        "in each path inside its label folder, e.g. '^([0-9a-f]+)_nohash_' or '^([^/]+)/' (a "
                        "subfolder per session)")
    folds = [prompt_fold(g, seed, val_fraction, test_fraction) for g in groups]
    missing = sorted({f"{label} (no {f})" for label in {c.voice for c in clips} for f in ("train", "val", "test")
                      if not any(c.voice == label and k == f for c, k in zip(clips, folds))})
    if missing:
        raise UserError(f"data.group_pattern: with {len(set(groups))} groups, some labels get no recordings in a "
                        f"fold: {', '.join(missing[:6])}; add recordings of more groups, or change seed, "
                        "data.val_fraction or data.test_fraction")
    return folds


def load_labelled(clips: list[Prompt], sample_rate: int) -> list[np.ndarray]:
    """Mono float32 at sample_rate (channels averaged, resampled by librosa); a file that cannot be decoded stops
    the run naming it."""
    import librosa
    import soundfile as sf
    out = []
    for c in clips:
        try:   # soundfile reads every READABLE format (libsndfile >= 1.1 has MP3): no deprecated audioread fallback
            audio, rate = sf.read(c.path, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as err:
            raise UserError(f"{c.path}: cannot be read as audio ({err}); replace or remove it (nothing was "
                            "prepared)") from None
        audio = audio.mean(1)
        if not np.all(np.isfinite(audio)):
            raise UserError(f"{c.path}: has NaN or infinite samples; fix or remove it (nothing was prepared)")
        out.append(librosa.resample(audio, orig_sr=rate, target_sr=sample_rate).astype(np.float32)
                   if rate != sample_rate else audio)
    return out


def prompt_fold(name: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """'train' | 'val' | 'test' for a prompt name: a seeded hash, so the fold of a prompt never depends on which
    voices or files are present (and the same text lands in the same fold in every language)."""
    u = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big") / 2**64
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


def load_prompt(prompt: Prompt, sample_rate: int) -> np.ndarray:
    """Mono float32 in [-1, 1] at sample_rate."""
    if prompt.path.suffix == ".g722":
        return decode_g722([prompt.path])[0]
    import librosa
    audio, _ = librosa.load(prompt.path, sr=sample_rate, mono=True)
    return audio.astype(np.float32)


def decode_g722(paths: list[Path], batch: int = 64) -> list[np.ndarray]:
    """Raw G.722 files -> 16 kHz float32 arrays, decoded by ffmpeg (many files per process: one process per file
    would cost more than the decoding)."""
    import soundfile as sf
    if shutil.which("ffmpeg") is None:
        raise UserError("ffmpeg not found: the 16 kHz prompts are G.722-coded; apt-get install ffmpeg "
                        "(or use data.sample_rate=8000)")
    out: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as tmp:
        for start in range(0, len(paths), batch):
            group = paths[start:start + batch]
            cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
            for p in group:
                cmd += ["-f", "g722", "-i", str(p)]
            for i in range(len(group)):
                cmd += ["-map", f"{i}:a", "-ac", "1", "-ar", "16000", f"{tmp}/{i}.wav"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                raise UserError(f"ffmpeg could not decode G.722 ({group[0]} ...): {done.stderr.strip()[-500:]}")
            out += [sf.read(f"{tmp}/{i}.wav", dtype="float32")[0] for i in range(len(group))]
    return out


def load_prompts(prompts: list[Prompt], sample_rate: int) -> list[np.ndarray]:
    if prompts and prompts[0].path.suffix == ".g722":
        return decode_g722([p.path for p in prompts])
    return [load_prompt(p, sample_rate) for p in prompts]


def music_tracks(sample_rate: int, root: Path = MOH_ROOT) -> dict[str, np.ndarray]:
    """The music-on-hold tracks at sample_rate ({} when the package is missing: music noise is then skipped,
    and prepare says so)."""
    import librosa
    if not root.is_dir():
        return {}
    return {f.stem: librosa.load(f, sr=sample_rate, mono=True)[0].astype(np.float32)
            for f in sorted(root.glob("*.wav"))}
