"""The lift task's prediction input on the core's Reader contract: one keypoint file or video per item, read
and checked by readers.py, with warnings where keypoints and image size do not belong together."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from core.errors import UserError
from core.readers import Batch, Reader, decoding_errors
from domains.poses.readers import (
    INPUT_SUFFIXES,
    VIDEO_SUFFIXES,
    Keypoints2D,
    read_keypoints,
    read_settings,
    settings_path,
)

log = logging.getLogger(__name__)


def implausible(data: Keypoints2D) -> list[str]:
    """Signs that keypoints and image size do not belong together. Lifting normalizes by the image size, so a
    wrong size gives plausible-looking but wrong 3D without any error; a detector's joints a little outside
    the frame are normal, most of them far outside are not."""
    points = np.concatenate([t.keypoints.reshape(-1, 2) for t in data.tracks]) if data.tracks else np.zeros((0, 2))
    points = points[np.isfinite(points).all(1)]
    if len(points) == 0:
        return []
    w, h = data.image_size
    problems = []
    far = ((points[:, 0] < -0.5 * w) | (points[:, 0] > 1.5 * w) | (points[:, 1] < -0.5 * h) | (points[:, 1] > 1.5 * h))
    if far.mean() > 0.05:
        problems.append(f"{far.sum()} of {len(points)} keypoints lie more than half an image outside the "
                        f"{w:g} x {h:g} image; is the image size right (width/height, or image_size in the "
                        "settings file)?")
    if max(w, h) > 10 and np.abs(points).max() <= 1.5:
        problems.append(f"every keypoint lies within 1.5 px of the corner of the {w:g} x {h:g} image: they look "
                        "normalized to 0-1; give pixel coordinates, or image size 1 x 1")
    return problems


class KeypointsReader(Reader):
    """The lift task's prediction input: one keypoint file or video = one item (its tracks inside). `check`
    parses the whole file (or opens the video and loads MediaPipe), so an input that validates never fails
    half-way."""

    formats = INPUT_SUFFIXES
    locate = ("track_id", "frame")

    def __init__(self, defaults: dict | None = None):
        self.defaults = dict(defaults or {})   # the command's lift.input: where a file and its sidecar are silent

    def check(self, path: Path) -> None:
        path = Path(path)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            from domains.poses.detect import open_video, require_mediapipe
            read_settings(path)
            open_video(path)[0].release()
            require_mediapipe()
            return
        for problem in implausible(self.read(path)):
            log.warning("%s: %s", path, problem)

    def read(self, path: Path) -> Keypoints2D:
        with decoding_errors(path, "keypoint file"):
            try:
                return read_keypoints(path, defaults=self.defaults)
            except (KeyError, TypeError, AttributeError, IndexError) as exc:   # a structure the checks missed
                raise UserError(f"{path}: not the expected keypoint structure ({type(exc).__name__}: {exc}); see "
                                "domains/poses/README.md for the JSON, CSV and NPY layouts") from None

    def input_files(self, path: Path) -> list[Path]:
        side = settings_path(path)
        return [Path(path), *([side] if side.exists() else [])]

    def count(self, path: Path) -> int:
        return 1

    def batches(self, path: Path, size: int) -> Iterator[Batch]:
        yield Batch(self.read(Path(path)), [Path(path).name], 0)
