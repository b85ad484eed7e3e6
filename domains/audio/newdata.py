"""New recordings in: an audio file, a folder of them (searched recursively), or a CSV manifest with a `path`
column (relative paths are relative to the manifest), through core.readers.FilesReader, which checks the
input before any model loads (and core.outputs refuses an output folder that is, or holds, the input). Every
file then gets a status instead of stopping the run:

    ok                  processed
    clipped             processed, but >= 0.1% of its samples sit at full scale (the clipping stays); a float
                        file whose samples exceed full scale is not clipped (nothing capped it) and is
                        written back at its own level
    truncated           the file ends before its header says: the readable part was processed
    silent              pure digital silence: written unchanged (enhance) / no label (classify)
    empty               zero-length audio: nothing to process
    too_short           classify: shorter than 0.1 s, too little to label (enhance processes any length)
    non_finite          a float file with NaN or infinite samples: fix the recording (nothing sensible to do)
    empty_file          a 0-byte file
    unreadable          not a valid audio file (corrupt header or data)
    unsupported_format  a format libsndfile cannot read (m4a, aac, wma...): convert it, e.g. ffmpeg -i X X.flac
    missing_file        a manifest row names a file that does not exist

Any sample rate (resampled to the model's and the output back to the input's), any length (streamed in blocks,
see streaming.py), mono or multi-channel: enhancement treats each channel as its own recording (the output
keeps the channel layout); classification averages the channels to mono (one label per file).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from core.readers import FilesReader

READABLE = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd",
            ".caf", ".w64", ".rf64"}
UNREADABLE_AUDIO = {".m4a", ".aac", ".wma", ".webm", ".mp4", ".amr", ".ape", ".mka", ".ac3", ".3gp"}
CLIP_LEVEL, CLIP_FRACTION, SILENCE = 0.999, 1e-3, 1e-5
FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}          # samples may exceed full scale (1.0) without being clipped


class AudioReader(FilesReader):
    """core.readers.FilesReader over every audio suffix: formats libsndfile cannot read are still collected
    (they get the `unsupported_format` status instead of being silently skipped)."""

    def __init__(self):
        super().__init__(sorted(READABLE | UNREADABLE_AUDIO), what="audio")


def output_name(item_id: str, used: set[str]) -> str:
    """The enhanced file's name inside the output folder: the input's path relative to the folder or manifest
    it was listed in (its bare name when it lies outside), made unique within one run."""
    p = Path(item_id)
    name = p.name if p.is_absolute() or ".." in p.parts else p.as_posix()
    stem, suffix, k = Path(name).with_suffix("").as_posix(), Path(name).suffix, 2
    while name in used:
        name, k = f"{stem}__{k}{suffix}", k + 1
    used.add(name)
    return name


def wav_truncated(path: Path) -> bool:
    """True when a RIFF/WAVE file's data chunk claims more bytes than the file holds (libsndfile reads what is
    there without complaint, so the header is checked directly)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return False
        size = path.stat().st_size
        fmt = "<I" if head[:4] == b"RIFF" else ">I"
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return False
            cid, n = chunk[:4], struct.unpack(fmt, chunk[4:])[0]
            if cid == b"data":
                return n != 0xFFFFFFFF and f.tell() + n > size
            f.seek(n + (n & 1), 1)


def probe(path: Path) -> tuple[str, dict]:
    """(status, info) from the header: sample rate, channels, frames, format."""
    import soundfile as sf
    if path.stat().st_size == 0:
        return "empty_file", {}
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        return "unreadable", {"message": str(exc)}
    meta = {"sample_rate": info.samplerate, "channels": info.channels, "frames": info.frames,
            "format": info.format, "subtype": info.subtype}
    if info.frames == 0:
        return "empty", meta
    return ("truncated" if wav_truncated(path) else "ok"), meta


def level_scan(path: Path, block: int = 1 << 16) -> dict:
    """One streaming pass: RMS (all channels), peak, clipped fraction, and whether the file reads to its end."""
    import soundfile as sf
    total, sq, peak, clipped, bad = 0, 0.0, 0.0, 0, 0
    try:
        for x in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            finite = np.isfinite(x)
            if not finite.all():
                bad += int(x.size - np.count_nonzero(finite))
                x = np.where(finite, x, 0.0)
            total += x.size
            sq += float(np.sum(x.astype(np.float64) ** 2))
            a = np.abs(x)
            peak = max(peak, float(a.max(initial=0.0)))
            clipped += int(np.count_nonzero(a >= CLIP_LEVEL))
        complete = True
    except (sf.LibsndfileError, RuntimeError):
        complete = False
    return {"rms": float(np.sqrt(sq / total)) if total else 0.0, "peak": peak, "complete": complete,
            "clipped_fraction": clipped / total if total else 0.0, "non_finite": bad}


def classify_status(status: str, levels: dict, subtype: str = "") -> tuple[str, str]:
    """(status, message) from the level scan."""
    if levels["non_finite"]:
        return "non_finite", (f"{levels['non_finite']} sample(s) are NaN or infinite; repair or re-export the "
                              "recording")
    if status == "ok" and not levels["complete"]:
        status = "truncated"
    if levels["peak"] < SILENCE:
        return "silent", ""
    if subtype in FLOAT_SUBTYPES and levels["peak"] > 1.0:   # over full scale, so nothing capped it at 1
        return status, f"float samples exceed full scale (peak {levels['peak']:.3g}): not clipped"
    if status == "ok" and levels["clipped_fraction"] >= CLIP_FRACTION:
        return "clipped", ""
    return status, ""
