"""Reading 2D keypoints for prediction, validated before any model loads.

Formats (by suffix):
- `.json`, mmpose/COCO style, one of: mmpose's demo output {"meta_info": {"dataset_name": ...}, "instance_info":
  [{"frame_id", "instances": [{"keypoints": [[x, y], ...], "keypoint_scores": [...], "track_id"?}]}]}; the same
  list of frames without the wrapper; or COCO results [{"image_id", "keypoints": [x1, y1, v1, ...],
  "track_id"?}]. Image size from a top-level "image_size": [w, h] (or "width"/"height", or meta_info's), else
  from the config. A frame id may be an image name ending in its number ("frame_00012.jpg"); a null track_id
  (mmpose without tracking) means the instance's place in its frame.
- `.csv`, long format: frame, [track_id,] joint (index or name), x, y, score [, width, height].
- `.npy`: [frames, joints, 2 | 3] (x, y[, score]) of one person; image size from the config.
- a video (`.mp4`, `.avi`, `.mov`, `.mkv`, `.webm`): MediaPipe detection first (see detect.py).

Layouts: h36m (17), coco (17), mediapipe (33); declared in a settings file or the JSON's meta_info, else
detected (skeleton.detect_layout).

Settings the file itself cannot carry (the image size of an NPY, a CSV's frame rate, a 17-joint layout that
cannot be told apart, how many people to follow in a video) go in an optional settings file beside the input,
`<stem>.settings.json`: {"image_size": [width, height], "layout": "coco", "fps": 30, "people": 1}, or, for every
input of one command, in the config's `lift.input` (`--set lift.input.image_size=[1920,1080]`). The more specific
source wins: the file's own fields, then its settings file, then `lift.input`.

NaN coordinates or missing joints are masked (score 0), never fatal. Everything else a user can get wrong
raises UserError naming the file, frame or row and the fix.
"""
from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError
from core.readers import separator_hint
from domains.poses.skeleton import LAYOUTS, N_JOINTS, detect_layout, joint_names

log = logging.getLogger("sciformer.poses")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
INPUT_SUFFIXES = (".json", ".csv", ".npy", *VIDEO_SUFFIXES)


@dataclass
class Track:
    """One person: frames [N] (the input's frame numbers), keypoints [N, K, 2] pixels (NaN = missing),
    scores [N, K] (0 = missing)."""
    track_id: int
    frames: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray


@dataclass
class Keypoints2D:
    path: Path
    format: str
    layout: str
    image_size: tuple[float, float]
    tracks: list[Track]
    fps: float | None = None
    extra: dict = field(default_factory=dict)   # e.g. MediaPipe's own 3D for video input


def _size(path: Path, *candidates) -> tuple[float, float]:
    for c in candidates:
        if c is None:
            continue
        try:
            w, h = (float(v) for v in c)
        except (TypeError, ValueError):
            raise UserError(f"{path}: image size must be [width, height] in pixels, got {c!r}") from None
        if np.isnan(w) and np.isnan(h):   # empty width/height cells: not given here
            continue
        if np.isfinite([w, h]).all() and w > 0 and h > 0:
            return w, h
        raise UserError(f"{path}: image size must be positive finite [width, height] in pixels, got [{w:g}, {h:g}]")
    raise UserError(f"{path}: the image size is missing; the lifter normalizes keypoints by it. Add "
                    "\"image_size\": [width, height] to the JSON, width/height columns to the CSV, or write "
                    f"{{\"image_size\": [1920, 1080]}} to {settings_path(path).name} beside the input")


def _layout(path: Path, k_counts: set[int], declared: str | None, keypoints: np.ndarray | None,
            warn_mismatch: bool = True) -> str:
    """The input's layout: `declared` (checked against the joint count; with `warn_mismatch`, a user's declaration
    the keypoints contradict is named), else detected."""
    if len(k_counts) > 1:
        raise UserError(f"{path}: mixed layouts in one file: instances have {sorted(k_counts)} keypoints; split "
                        "the file by layout (one of h36m-17, coco-17, mediapipe-33 per file)")
    k = next(iter(k_counts))
    if keypoints is not None and keypoints.size and not np.isfinite(keypoints).any():
        raise UserError(f"{path}: no finite keypoint in any frame (all NaN or infinite); nothing to lift")
    if declared not in (None, "auto"):
        if declared not in LAYOUTS:
            raise UserError(f"{path}: unknown layout {declared!r}; use one of {', '.join(LAYOUTS)} (or auto)")
        if N_JOINTS[declared] != k:
            raise UserError(f"{path}: layout {declared} has {N_JOINTS[declared]} joints but the input has {k}")
        found = detect_layout(keypoints) if warn_mismatch and k == 17 and keypoints is not None and len(keypoints) \
            else None
        if found not in (None, declared):   # the declaration wins (poses can fool the guess), but a wrong one
            log.warning("%s: declared layout %s, but the keypoints look %s-ordered (points 1-4 lie %s point 0 "
                        "relative to the body's height); if the 3D looks wrong, declare %s", path, declared, found,
                        "close to" if found == "coco" else "far from", found)   # gives wrong 3D silently
        return declared
    if k not in N_JOINTS.values():
        raise UserError(f"{path}: {k} joints per person; supported layouts are h36m (17), coco (17) and "
                        "mediapipe (33); convert your keypoints to one of them")
    found = detect_layout(keypoints) if keypoints is not None and len(keypoints) else None
    if found is None:
        raise UserError(f"{path}: cannot tell whether these 17 joints are COCO or Human3.6M ordered; declare it "
                        f"in {settings_path(path).name} beside the input: {{\"layout\": \"coco\"}} (or \"h36m\")")
    return found


def _tracks(path: Path, frames: np.ndarray, ids: np.ndarray, kp: np.ndarray, sc: np.ndarray) -> list[Track]:
    out = []
    for tid in np.unique(ids):
        sel = np.flatnonzero(ids == tid)
        sel = sel[np.argsort(frames[sel], kind="stable")]
        if len(np.unique(frames[sel])) != len(sel):
            dup = frames[sel][np.flatnonzero(np.diff(frames[sel]) == 0)[0]]
            raise UserError(f"{path}: track {tid} has two people in frame {dup}; give each person its own track_id")
        bad = ~np.isfinite(kp[sel]).all(-1)
        out.append(Track(int(tid), frames[sel], kp[sel], np.where(bad, 0.0, np.nan_to_num(sc[sel]))))
    return out


def _frame_number(value, path: Path, where: str) -> int:
    """A frame id as a number: an integer, or the last number in a name such as "frame_00012.jpg" (tools that
    key frames by image file name)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    digits = re.findall(r"\d+", value) if isinstance(value, str) else []
    if not digits:
        raise UserError(f"{path}: {where}: frame id {value!r} is not a frame number; give frame_id / image_id as "
                        "an integer (or a name ending in one, e.g. frame_00012.jpg)")
    return int(digits[-1])


def _track_id(value, default: int, path: Path, where: str) -> int:
    """A track id; null (mmpose without tracking) is "not tracked": the instance's position in its frame."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) or not np.isfinite(value) \
            or float(value) != int(value):
        raise UserError(f"{path}: {where}: track_id {value!r} must be an integer (or null when not tracked)")
    return int(value)


def read_json(path: Path, layout: str | None, size) -> Keypoints2D:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig") or "null")
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if data is None or data == [] or data == {}:
        raise UserError(f"{path}: the file is empty; it needs per-frame instances with keypoints")
    meta = (data.get("meta_info") or {}) if isinstance(data, dict) else {}
    if not isinstance(meta, dict):
        raise UserError(f"{path}: 'meta_info' must be an object (e.g. {{\"dataset_name\": \"coco\"}}), "
                        f"got {type(meta).__name__}")
    declared = layout if layout not in (None, "auto") else meta.get("layout") or meta.get("dataset_name")
    if declared == "coco_wholebody":
        raise UserError(f"{path}: COCO-WholeBody (133 keypoints) is not supported; keep its first 17 (COCO) keypoints")
    top = data if isinstance(data, dict) else {}
    image_size = _size(path, top.get("image_size"),
                       [top.get("width"), top.get("height")] if "width" in top or "height" in top else None,
                       meta.get("image_size"), size)
    frames_list = data.get("instance_info", data.get("annotations")) if isinstance(data, dict) else data
    if not isinstance(frames_list, list) or not frames_list:
        raise UserError(f"{path}: expected a list of frames (or 'instance_info'), found none")
    rows = []   # (frame, track, keypoints [K, 2], scores [K])
    for i, item in enumerate(frames_list):
        if not isinstance(item, dict):
            raise UserError(f"{path}: entry {i} is not an object")
        if "instances" in item:
            frame = item.get("frame_id", i)
            if not isinstance(item["instances"], list):
                raise UserError(f"{path}: frame {frame}: 'instances' must be a list of people, "
                                f"got {type(item['instances']).__name__}")
            for n, inst in enumerate(item["instances"]):
                if not isinstance(inst, dict):
                    raise UserError(f"{path}: frame {frame} instance {n}: must be an object with 'keypoints'")
                where = f"{path}: frame {frame} instance {n}"
                kp = _numbers(inst.get("keypoints", []), f"{where}: keypoints")
                if kp.ndim != 2 or kp.shape[1] not in (2, 3):
                    raise UserError(f"{where}: keypoints must be [[x, y], ...]")
                sc = _numbers(inst.get("keypoint_scores", kp[:, 2] if kp.shape[1] == 3 else np.ones(len(kp))),
                              f"{where}: keypoint_scores")
                if sc.shape != (len(kp),):
                    raise UserError(f"{where}: {sc.size} keypoint_scores for {len(kp)} keypoints; give one score per "
                                    "keypoint")
                track = _track_id(inst.get("track_id"), n, path, f"frame {frame} instance {n}")
                rows.append((_frame_number(frame, path, f"entry {i}"), track, kp[:, :2], sc))
        elif "keypoints" in item:
            flat = _numbers(item["keypoints"], f"{path}: entry {i}: keypoints")
            if flat.ndim != 1 or len(flat) % 3:
                raise UserError(f"{path}: entry {i}: COCO keypoints must be a flat list [x1, y1, v1, ...]")
            kp = flat.reshape(-1, 3)
            where = f"entry {i}"
            rows.append((_frame_number(item.get("image_id", item.get("frame_id", i)), path, where),
                         _track_id(item.get("track_id"), 0, path, where), kp[:, :2], kp[:, 2]))
        else:
            raise UserError(f"{path}: entry {i} has neither 'instances' nor 'keypoints'")
    if not rows:
        raise UserError(f"{path}: no person instances in any frame; nothing to lift")
    counts = {len(r[2]) for r in rows}
    stacked = np.stack([r[2] for r in rows]) if len(counts) == 1 else None
    lay = _layout(path, counts, declared, stacked)
    frames = np.array([r[0] for r in rows], dtype=np.int64)
    ids = np.array([r[1] for r in rows], dtype=np.int64)
    fps = check_fps(path, meta.get("fps") or top.get("fps"))
    tracks = _tracks(path, frames, ids, stacked, np.stack([r[3] for r in rows]))
    return Keypoints2D(path, "json", lay, image_size, tracks,
                       fps=float(fps) if fps else None)


def read_csv(path: Path, layout: str | None, size) -> Keypoints2D:
    try:
        with warnings.catch_warnings():   # a row with more fields than the header: an error, not a shifted index
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, index_col=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty; it needs a header frame,[track_id,]joint,x,y,score") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise UserError(f"{path}: malformed CSV ({str(exc).split('. ')[0]}); every row needs as many fields as "
                        "the header (a ';'-separated file: save it with ',')") from None
    need = ["frame", "joint", "x", "y"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; expected frame, [track_id,] joint, x, y, score"
                        f"{separator_hint(df.columns)}")
    if df.empty:
        raise UserError(f"{path}: no data rows; nothing to lift")
    if "track_id" not in df:
        df["track_id"] = 0
    if "score" not in df:
        df["score"] = 1.0
    declared_size = [df["width"].iloc[0], df["height"].iloc[0]] if {"width", "height"} <= set(df) else None
    image_size = _size(path, declared_size, size)
    for col in ("frame", "track_id"):
        if not pd.api.types.is_integer_dtype(df[col]):
            values = pd.to_numeric(df[col], errors="coerce")
            bad = df.index[values.isna() | (values != values.round())]
            if len(bad):
                raise UserError(f"{path}: row {int(bad[0]) + 2}: {col} must be an integer, "
                                f"got {str(df[col].iloc[bad[0]])!r}")
            df[col] = values.astype(int)
    k = int(df.groupby(["frame", "track_id"]).size().max())
    joint = df["joint"]
    named = not pd.api.types.is_integer_dtype(joint)
    if named:
        fits = [n for n in LAYOUTS if set(joint) <= set(joint_names(n))]   # coco's names are in mediapipe's too
        lay = layout if layout not in (None, "auto") else ("coco" if "coco" in fits and k <= 17 else
                                                           (fits[0] if fits else None))
        if lay is None or lay not in LAYOUTS:
            raise UserError(f"{path}: joint names {sorted(set(joint))[:5]}... match no layout ({', '.join(LAYOUTS)}); "
                            "use names from one layout or joint indices")
        unknown = sorted(set(joint) - set(joint_names(lay)))
        if unknown:
            raise UserError(f"{path}: unknown {lay} joint name(s) {unknown[:5]}")
        df["joint"] = joint.map({n: i for i, n in enumerate(joint_names(lay))})
        layout = lay
    if df["joint"].min() < 0:
        raise UserError(f"{path}: row {int(df['joint'].idxmin()) + 2}: negative joint index")
    twice = df.duplicated(["frame", "track_id", "joint"])
    if twice.any():
        first = int(np.flatnonzero(twice)[0])
        raise UserError(f"{path}: row {first + 2} repeats frame {df['frame'].iloc[first]}, track "
                        f"{df['track_id'].iloc[first]}, joint {df['joint'].iloc[first]}; give each person its own "
                        "track_id and each joint one row")
    k = int(df["joint"].max()) + 1
    if layout in N_JOINTS:   # declared or named: a joint never detected (its rows left out) is masked, not a miscount
        if k > N_JOINTS[layout]:
            raise UserError(f"{path}: joint index {k - 1} is beyond layout {layout}'s {N_JOINTS[layout]} joints")
        if k <= 17 < N_JOINTS[layout]:
            raise UserError(f"{path}: joint indices reach only {k - 1}, as a 17-joint layout's do, but layout {layout} "
                            f"has {N_JOINTS[layout]}; declare the layout the file uses (coco or h36m)")
        k = N_JOINTS[layout]
    elif k < 17:
        raise UserError(f"{path}: joint indices reach only {k - 1}, fewer than any layout's 17 joints; if some joints "
                        f"were never detected (their rows left out), declare the layout (\"layout\": \"coco\" in "
                        f"{settings_path(path).name}, or --set lift.input.layout=coco) and they are masked")
    keys = df[["frame", "track_id"]].drop_duplicates().sort_values(["track_id", "frame"]).to_numpy()
    index = {tuple(kk): n for n, kk in enumerate(keys)}
    kp = np.full((len(keys), k, 2), np.nan)
    sc = np.zeros((len(keys), k))
    rows = np.array([index[(f, t)] for f, t in zip(df["frame"], df["track_id"])])
    kp[rows, df["joint"].to_numpy()] = df[["x", "y"]].to_numpy(float)
    sc[rows, df["joint"].to_numpy()] = df["score"].to_numpy(float)
    lay = _layout(path, {k}, layout, kp, warn_mismatch=not named)   # names fix the order: nothing to doubt
    return Keypoints2D(path, "csv", lay, image_size, _tracks(path, keys[:, 0], keys[:, 1], kp, sc))


def read_npy(path: Path, layout: str | None, size) -> Keypoints2D:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise UserError(f"{path}: not a readable .npy array ({err})") from None
    if arr.size == 0:
        raise UserError(f"{path}: the array is empty; expected [frames, joints, 2 or 3]")
    if arr.ndim != 3 or arr.shape[2] not in (2, 3):
        raise UserError(f"{path}: shape {arr.shape}; expected [frames, joints, 2 or 3] (x, y[, score])")
    arr = arr.astype(np.float64)
    sc = arr[..., 2] if arr.shape[2] == 3 else np.ones(arr.shape[:2])
    lay = _layout(path, {arr.shape[1]}, layout, arr[..., :2])
    return Keypoints2D(path, "npy", lay, _size(path, size),
                       _tracks(path, np.arange(len(arr)), np.zeros(len(arr), int), arr[..., :2], sc))


def read_video(path: Path, people: int = 1, max_frames: int | None = None) -> Keypoints2D:
    from domains.poses.detect import detect_video
    det = detect_video(path, people=people, max_frames=max_frames)
    tracks = []
    for p in range(det["keypoints"].shape[0]):
        seen = np.isfinite(det["keypoints"][p]).all(-1).any(-1)
        frames = np.flatnonzero(seen)
        if len(frames):
            tracks.append(Track(p, frames, det["keypoints"][p][frames], det["scores"][p][frames]))
    if not tracks:
        raise UserError(f"{path}: MediaPipe found no person in any frame")
    return Keypoints2D(path, "video", "mediapipe", tuple(float(v) for v in det["size"]), tracks, fps=float(det["fps"]),
                       extra={"mediapipe_world": det["world"]})


def settings_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).stem + ".settings.json")


SETTINGS_KEYS = ("image_size", "layout", "fps", "people")


def check_fps(where, fps):
    """A frame rate from a file: None (or 0, as some writers put it) = unknown, else 0 < fps <= 1000."""
    if fps is None or (isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps == 0):
        return None
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and 0 < fps <= 1000):
        raise UserError(f"{where}: fps must be a number of frames per second in (0, 1000], got {fps!r}")
    return fps


def read_settings(path: Path) -> dict:
    """The optional settings file beside an input (see the module docstring); {} when there is none."""
    side = settings_path(path)
    if not side.exists():
        return {}
    where = f"{side} (settings of {Path(path).name})"
    try:
        values = json.loads(side.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{where}: not valid UTF-8 JSON ({err}); write e.g. {{\"image_size\": [1920, 1080]}}") from None
    if not isinstance(values, dict) or set(values) - set(SETTINGS_KEYS):
        extra = sorted(set(values) - set(SETTINGS_KEYS)) if isinstance(values, dict) else values
        raise UserError(f"{where}: unknown setting(s) {extra}; allowed: {', '.join(SETTINGS_KEYS)}")
    check_fps(where, values.get("fps"))
    people = values.get("people", 1)
    if not (isinstance(people, int) and 1 <= people <= 8):
        raise UserError(f"{where}: people must be an integer from 1 to 8, got {people!r}")
    return values


def read_keypoints(path: str | Path, layout: str | None = None, image_size=None, people: int | None = None,
                   max_frames: int | None = None, fps: float | None = None,
                   defaults: dict | None = None) -> Keypoints2D:
    """Any supported input -> validated tracks (see the module docstring). Arguments given here win over the
    settings file beside the input, which wins over `defaults` (the command's `lift.input`); a size or layout
    the file declares itself wins over all of them."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: input file not found")
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise UserError(f"{path}: unsupported input {suffix or '(no extension)'}; "
                        f"use one of {', '.join(INPUT_SUFFIXES)}")
    side = {**{k: v for k, v in (defaults or {}).items() if v is not None}, **read_settings(path)}
    layout = layout or side.get("layout")
    image_size = image_size if image_size is not None else side.get("image_size")
    fps = fps or side.get("fps")
    if suffix in VIDEO_SUFFIXES:
        from domains.poses.detect import open_video
        open_video(path)[0].release()        # corrupt or unreadable videos fail here, before detection
        data = read_video(path, people or int(side.get("people", 1)), max_frames)
    else:
        if path.stat().st_size == 0:
            raise UserError(f"{path}: the file is empty")
        reader = {".json": read_json, ".csv": read_csv, ".npy": read_npy}[suffix]
        data = reader(path, layout, image_size)
    if fps:
        data.fps = float(fps)
    return data


def _numbers(value, what: str) -> np.ndarray:
    """A JSON list as a float array, or an error saying where the non-number is (not numpy's message)."""
    try:
        return np.asarray(value, float)
    except (TypeError, ValueError):
        raise UserError(f"{what}: must be numbers in equal-length lists (null for a missing value), "
                        f"got {json.dumps(value)[:80]}") from None
