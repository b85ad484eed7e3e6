"""Evaluation of the lift task: our model and mmpose's peers on the same unseen test motions and the same real
clips, in one run. Rows follow the convention {task: lift-3d, dataset, split, method, metric, value, machine};
per-clip rows carry a `clip` field (the `unseen-motions` rows without it average over every test frame)."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from core.io import file_sha256
from domains.poses import baselines, data
from domains.poses.flops import counted_flops, lifter_flops
from domains.poses.lifting import ensemble_lift, resample_time
from domains.poses.metrics import lifting_metrics, rows
from domains.poses.model import CHI3_90
from domains.poses.noise import fill_missing
from domains.poses.training import encode_keypoints, encode_split, root_relative

SYNTHETIC = "unseen-motions"
EXAMPLE = "test_sequence.npz"   # evaluation artifact: one test sequence lifted, for the report


OUR_METHODS = {False: "sciformer", True: "sciformer-hot"}   # our model's row names, by its HoT setting


def method_name(meta: Mapping[str, Any]) -> str:
    return OUR_METHODS[bool(meta["model"]["hot"])]


def _median_time(fn: Callable[[], Any], repeats: int = 3) -> float:
    fn()   # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _train_peer(level: int, *args, **kwargs) -> None:
    """One peer in a spawned process: the parent's log level, so its per-epoch lines reach the log."""
    from core.logs import configure_logging
    configure_logging(level)
    baselines.train(*args, **kwargs)


def baseline_runs(section: Mapping[str, Any], prepared: Path, seed: int) -> dict[str, tuple]:
    """Train (or reuse, when config, data and seed match) every configured mmpose peer; `peer_jobs` of them at
    once in spawned processes (one torch thread each), else one after the other in this process."""
    folders = {m: Path(prepared) / "baselines" / m for m in section["baselines"]}
    hashes = [file_sha256(Path(prepared) / f"{s}.npz") for s in ("train", "val")]
    todo = {}
    for method, folder in folders.items():
        key = hashlib.sha256(json.dumps({"opts": baselines.peer_settings(section, method), "seed": seed,
                                         "data": hashes}, sort_keys=True).encode()).hexdigest()
        meta_path = folder / "meta.json"
        if not (meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") == key):
            todo[method] = (method, prepared, folder, dict(section), seed, key)
    jobs = min(int(section.get("peer_jobs", 1)), len(todo))
    if jobs > 1:
        import logging
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        level = logging.getLogger("sciformer").getEffectiveLevel()
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in [pool.submit(_train_peer, level, *args) for args in todo.values()]:
                future.result()
    else:
        for args in todo.values():
            baselines.train(*args)
    return {method: baselines.load_model(folder) for method, folder in folders.items()}


def _per_clip(seqs: data.Sequences, values: np.ndarray) -> dict[str, np.ndarray]:
    clip_of_frame = np.repeat(seqs.seq_clip, seqs.lengths())
    return {c: values[clip_of_frame == c] for c in np.unique(seqs.seq_clip)}


def _method_rows(dataset: str, method: str, pred: np.ndarray, gt: np.ndarray, seqs: data.Sequences) -> list[dict]:
    out = rows(dataset, method, lifting_metrics(pred, gt, seqs.seq_start))
    clip_of_frame = np.repeat(seqs.seq_clip, seqs.lengths())
    for clip in np.unique(seqs.seq_clip):
        sel = np.flatnonzero(clip_of_frame == clip)
        starts = np.concatenate([[0], np.cumsum(seqs.lengths()[seqs.seq_clip == clip])])
        out += rows(dataset, method, lifting_metrics(pred[sel], gt[sel], starts), clip=str(clip))
    return out


def evaluate_synthetic(section, prepared: Path, members, peers: dict,
                       artifacts: Path | None = None) -> tuple[list[dict], pd.DataFrame]:
    test = data.load(prepared, "test")
    enc = encode_split(test)
    gt = root_relative(test.joints)
    meta = members[0].metadata["task"]
    ours = method_name(meta)
    pred, unc = ensemble_lift(members, enc.inputs, enc.seq_start)
    out = _method_rows(SYNTHETIC, ours, pred, gt, test)
    if artifacts is not None:   # the first test sequence, for the report's 3D skeletons (ours vs ground truth)
        span = test.span(0)
        np.savez(Path(artifacts) / EXAMPLE, pred_mm=pred[span] * 1000.0, gt_mm=gt[span] * 1000.0, unc_mm=unc[span],
                 clip=str(test.seq_clip[0]))
    err_mm = np.linalg.norm(pred - gt, axis=-1) * 1000.0
    out += rows(SYNTHETIC, ours, {"unc_coverage90": float(np.mean(err_mm <= CHI3_90 * unc)),
                                  "unc_error_spearman": float(pd.Series(unc.ravel()).corr(pd.Series(err_mm.ravel()),
                                                                                         method="spearman"))})
    window = int(meta["window"])
    n = min(int(section["speed_frames"]), len(test.keypoints))
    head = data.Sequences(test.keypoints[:n], test.scores[:n], test.joints[:n], np.array([0, n]), test.seq_clip[:1],
                          test.seq_camera[:1], test.size[:1], test.K[:1])

    def ours_on_head():   # encoding included: the peers' timings include theirs
        return ensemble_lift(members, encode_keypoints(head.keypoints, head.scores, head.size[0]), head.seq_start)
    speed = {ours: n / _median_time(ours_on_head)}
    flops = {ours: len(members) * lifter_flops(meta, window) / window}
    frame = pd.DataFrame({"dataset": SYNTHETIC, "clip": np.repeat(test.seq_clip, test.lengths()),
                          "camera": np.repeat(test.seq_camera, test.lengths()), f"mpjpe_{ours}": err_mm.mean(1)})
    for j in range(17):
        frame[f"err_j{j}_{ours}"] = err_mm[:, j]
    import torch
    for method, (model, pmeta) in peers.items():
        p = baselines.predict(model, pmeta, test.keypoints, test.scores, test.seq_start, test.size)
        out += _method_rows(SYNTHETIC, method, p, gt, test)
        frame[f"mpjpe_{method}"] = np.linalg.norm(p - gt, axis=-1).mean(1) * 1000.0
        speed[method] = n / _median_time(lambda: baselines.predict(model, pmeta, head.keypoints, head.scores,
                                                                   head.seq_start, head.size))
        rf = 27 if method == "mmpose-videopose3d-27" else 1
        flops[method] = counted_flops(lambda x: model.head.forward(model.backbone(x)), torch.zeros(1, 51, rf))
    for method in speed:
        out += rows(SYNTHETIC, method, {"gflops_per_frame": flops[method] / 1e9, "frames_per_s": speed[method]})
    return out, frame


def _resampled(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], kp: np.ndarray, sc: np.ndarray, fps: float,
               model_fps: float) -> np.ndarray:
    """Run fn on the sequence resampled to the model's frame rate, and bring the result back."""
    n_model = max(1, int(round(len(kp) * model_fps / fps)))
    out = fn(resample_time(kp, n_model), resample_time(sc, n_model))
    return resample_time(out, len(kp))


def evaluate_real(section, prepared: Path, members, peers: dict) -> list[dict]:
    from domains.poses.cameras import Camera, triangulate
    from domains.poses.skeleton import to_h36m
    path = Path(prepared) / "real.npz"
    if not path.exists():
        return []
    z = dict(np.load(path))
    cams = [Camera(f"cam{c + 1:02d}", z["K"][c], z["R"][c], z["t"][c], (0, 0)) for c in range(len(z["K"]))]
    model_fps = float(members[0].metadata["task"]["fps"])
    ours = method_name(members[0].metadata["task"])
    out = []
    for clip in section["real"]["clips"]:
        if f"{clip}/world" not in z:
            continue
        pts, sc, world, fps = z[f"{clip}/points"], z[f"{clip}/scores"], z[f"{clip}/world"], float(z[f"{clip}/fps"])
        preds: dict[str, list] = {}
        gts, reproj = [], []
        for p in range(world.shape[0]):
            valid = np.isfinite(world[p]).all((1, 2))
            reproj.append(z[f"{clip}/error"][p][valid])
            for c, cam in enumerate(cams):
                gt = root_relative(cam.to_camera(np.nan_to_num(world[p])))
                size = z[f"{clip}/sizes"][c]
                seen = sc[c, p] > 0
                kp, s = fill_missing(pts[c, p], sc[c, p], ~seen)      # every method gets the same masked input

                def ours_fn(k, s_, size=size):
                    return ensemble_lift(members, encode_keypoints(k, s_, size), np.array([0, len(k)]))[0]
                got = {ours: _resampled(ours_fn, kp, s, fps, model_fps)}
                for method, (model, pmeta) in peers.items():
                    def peer_fn(k, s_, model=model, pmeta=pmeta, size=size):
                        return baselines.predict(model, pmeta, k, s_, np.array([0, len(k)]), size[None])
                    got[method] = _resampled(peer_fn, kp, s, fps, model_fps)
                mp = to_h36m(z[f"{clip}/mediapipe_world"][c, p], "mediapipe")
                got["mediapipe-3d"] = np.nan_to_num(root_relative(mp))
                others = [o for o in range(len(cams)) if o != c]
                loo, _, _ = triangulate(pts[others, p], sc[others, p], [cams[o] for o in others],
                                        float(section["real"]["min_score"]), float(section["real"]["max_error_px"]))
                got["triangulation-3cam"] = np.nan_to_num(root_relative(cam.to_camera(np.nan_to_num(loo))))
                # frames this camera saw the person in, with a full pseudo ground truth and every method's output
                keep = valid & seen.any(1) & np.isfinite(loo).all((1, 2)) & np.isfinite(mp).all((1, 2))
                for method, value in got.items():
                    preds.setdefault(method, []).append(value[keep])
                gts.append(gt[keep])
        gt_all = np.concatenate(gts)
        dataset = f"real-{clip}"
        for method, chunks in preds.items():
            values = lifting_metrics(np.concatenate(chunks), gt_all)
            out += rows(dataset, method, values, frames=int(len(gt_all)))
        out += rows(dataset, "triangulation", {"reprojection_px": float(np.mean(np.concatenate(reproj)))})
    return out


def evaluate(cfg, prepared: Path, members, artifacts: Path | None = None) -> tuple[list[dict], pd.DataFrame]:
    section = cfg.to_dict()["lift"]
    peers = baseline_runs(section, prepared, int(cfg["seed"]))
    out, frame = evaluate_synthetic(section, prepared, members, peers, artifacts)
    out += evaluate_real(section, prepared, members, peers)
    return out, frame
