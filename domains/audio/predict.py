"""Prediction on new recordings: enhanced files in the output folder (the input's names, format, subtype,
sample rate and channels; core.outputs moves the finished set into place) and a table with one row per file:
id, status, duration_s, sample_rate, channels, message, and output (enhance) or label, p_<class>,
uncertainty (classify)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core.readers import FileItem, pass_through
from domains.audio import newdata as ND
from domains.audio import streaming as ST
from domains.audio.atten_limit import enhancer

PROCESSED = {"ok", "clipped", "truncated", "silent"}
OUTPUT_COLUMNS = {"id", "status", "duration_s", "sample_rate", "channels", "message", "output", "label",
                  "uncertainty"}
CLASSIFY_SEGMENT_S = 60.0   # long files are classified in 60 s segments, probabilities weighted by length


def _reader(path: Path, in_sr: int, model_sr: int, frames: int) -> tuple[Callable[[int, int], np.ndarray], int]:
    """Random access at the model's rate: read(start, stop) -> float32 [n, channels]. Resampled pieces read a
    margin either side (the resampler's filter support), so chunk edges match a whole-file resampling."""
    import librosa
    import soundfile as sf
    total = int(np.ceil(frames * model_sr / in_sr)) if in_sr != model_sr else frames
    pad = 64 * max(1, in_sr // model_sr)

    def read(start: int, stop: int) -> np.ndarray:
        with sf.SoundFile(str(path)) as f:
            if in_sr == model_sr:
                f.seek(start)
                return f.read(stop - start, dtype="float32", always_2d=True)
            a = max(0, int(np.floor(start * in_sr / model_sr)) - pad)
            b = min(frames, int(np.ceil(stop * in_sr / model_sr)) + pad)
            f.seek(a)
            x = f.read(b - a, dtype="float32", always_2d=True)
        y = librosa.resample(x.T, orig_sr=in_sr, target_sr=model_sr, res_type="soxr_hq").T
        offset = start - int(round(a * model_sr / in_sr))
        out = y[offset:offset + (stop - start)]
        if len(out) < stop - start:                     # the last samples of the file
            out = np.pad(out, ((0, stop - start - len(out)), (0, 0)))
        return out
    return read, total


def enhance_file(members, path: Path, out_path: Path, info: dict, levels: dict, silent: bool) -> None:
    """Stream one recording through the ensemble into out_path (same format, subtype, rate and channels)."""
    import soundfile as sf
    import soxr
    model = members[0].model
    model_sr, in_sr, ch = model.sample_rate, info["sample_rate"], info["channels"]
    with sf.SoundFile(str(out_path), "w", in_sr, ch, info["subtype"], format=info["format"]) as out:
        if silent:
            for x in sf.blocks(str(path), blocksize=1 << 16, dtype="float32", always_2d=True):
                out.write(x)
            return
        read, total = _reader(path, in_sr, model_sr, info["frames"])
        back = soxr.ResampleStream(model_sr, in_sr, ch, dtype="float32", quality="HQ") if in_sr != model_sr else None
        written, floating = [0], info["subtype"] in ND.FLOAT_SUBTYPES

        def write(block: np.ndarray, last: bool = False) -> None:
            y = back.resample_chunk(np.ascontiguousarray(block, np.float32), last=last) if back else block
            y = y[:max(0, info["frames"] - written[0])]
            out.write(y if floating else np.clip(y, -1.0, 1.0))   # a float file may exceed full scale
            written[0] += len(y)

        gain = 1.0 / max(levels["rms"], 1e-4)
        ST.enhance_stream(enhancer(members), read, total, write, gain,
                          members[0].metadata["task"]["chunk_seconds"])
        if back:
            write(np.zeros((0, ch), np.float32), last=True)      # flush the resampler
        if written[0] < info["frames"]:                     # resampler rounding: pad the last samples
            out.write(np.zeros((info["frames"] - written[0], ch), np.float32))


def classify_file(members, path: Path, info: dict) -> np.ndarray:
    """Class probabilities of one recording (channels averaged to mono; files longer than 60 s in segments, each
    pooled with the run's MFCC regression, averaged weighted by length)."""
    import librosa
    import soundfile as sf

    from domains.audio.classify_pool import class_probabilities
    meta = members[0].metadata["task"]
    seg = int(CLASSIFY_SEGMENT_S * info["sample_rate"])
    probs, weights = [], []
    for x in sf.blocks(str(path), blocksize=seg, dtype="float32", always_2d=True):
        mono = x.mean(1)
        if info["sample_rate"] != meta["sample_rate"]:
            mono = librosa.resample(mono, orig_sr=info["sample_rate"], target_sr=meta["sample_rate"],
                                    res_type="soxr_hq")
        if len(mono) < meta["sample_rate"] // 10:        # a tail shorter than 0.1 s adds nothing
            continue
        probs.append(class_probabilities(members, [{"audio": mono, "y": 0}])[0])
        weights.append(len(mono))
    if not probs:
        raise TooShort(f"{info['frames'] / info['sample_rate']:.3g} s; at least 0.1 s is needed for a label")
    return np.average(probs, axis=0, weights=weights)


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Whole numbers stay whole (8000, not 8000.0) in every chunk, including one where a file has none."""
    return table.astype({"sample_rate": "Int64", "channels": "Int64"})


class TooShort(ValueError):
    """A recording too short to classify (a per-file status, not a failure)."""


def inspect(item: FileItem, item_id: str) -> tuple[dict, dict, dict]:
    """(table row, header info, levels) of one input; the row's status says whether it can be processed. A
    manifest's other columns come first in the row (as a table input's columns do)."""
    path = item.path
    row = {"id": item_id, **_passed_through(item.fields), "status": "", "duration_s": np.nan,
           "sample_rate": np.nan, "channels": np.nan, "message": ""}
    if not path.exists():
        return {**row, "status": "missing_file", "message": f"{item.where()}{path} not found"}, {}, {}
    if path.is_dir():
        return {**row, "status": "unreadable", "message": f"{item.where()}{path} is a folder; list its audio "
                "files in the manifest, or give the folder itself as -i"}, {}, {}
    if path.suffix.lower() in ND.UNREADABLE_AUDIO:
        return {**row, "status": "unsupported_format",
                "message": f"convert it first, e.g. ffmpeg -i {path.name} {path.stem}.flac"}, {}, {}
    status, info = ND.probe(path)
    row["message"] = info.pop("message", "")
    if info:
        row.update(duration_s=info["frames"] / info["sample_rate"], sample_rate=info["sample_rate"],
                   channels=info["channels"])
    levels = ND.level_scan(path) if status in ("ok", "truncated") else {}
    row["status"] = status
    if levels:
        row["status"], message = ND.classify_status(status, levels, info.get("subtype", ""))
        row["message"] = "; ".join(m for m in (row["message"], message) if m)
    return row, info, levels


def _passed_through(fields: dict[str, str]) -> dict[str, str]:
    """A manifest's other columns; one named like an output column (or p_<class>) gets an `input_` prefix."""
    return pass_through(fields, lambda name: name in OUTPUT_COLUMNS or name.startswith("p_"))


def enhance_items(members, items: list[tuple[FileItem, str]], out, used: set[str]) -> pd.DataFrame:
    """Enhance every processable item straight into the output set's staging folder; one row per item."""
    rows = []
    for item, item_id in items:
        path = item.path
        row, info, levels = inspect(item, item_id)
        row["output"] = ""                      # every row has the column, so every chunk has the same ones
        if row["status"] in PROCESSED:
            name = ND.output_name(item_id, used)
            target = out.path(name)
            try:
                enhance_file(members, path, target, info, levels, row["status"] == "silent")
                row["output"] = name
            except Exception as exc:   # noqa: BLE001 -- one bad file must not lose the others' results
                target.unlink(missing_ok=True)
                out.files.remove(name)
                row.update(status="failed", message=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    return _typed(pd.DataFrame(rows))


def classify_items(members, items: list[tuple[FileItem, str]]) -> pd.DataFrame:
    """One row per item: label, class probabilities and uncertainty (normalized entropy of the model's
    probabilities, the networks' mean pooled with the run's MFCC regression: 0 = certain, 1 = uniform)."""
    classes = members[0].metadata["task"]["classes"]
    rows = []
    for item, item_id in items:
        path = item.path
        row, info, _ = inspect(item, item_id)
        row.update(label="", uncertainty=np.nan, **{f"p_{c}": np.nan for c in classes})
        if row["status"] in PROCESSED - {"silent"}:
            try:
                p = classify_file(members, path, info)
                row.update(label=classes[int(p.argmax())],
                           uncertainty=float(-(p * np.log(np.clip(p, 1e-12, 1))).sum() / np.log(len(p))),
                           **{f"p_{c}": float(v) for c, v in zip(classes, p)})
            except TooShort as exc:
                row.update(status="too_short", message=str(exc))
            except Exception as exc:   # noqa: BLE001
                row.update(status="failed", message=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    return _typed(pd.DataFrame(rows))
