"""Peers built and trained by mmpose itself on exactly our split.

- `mmpose-videopose3d-27`: mmpose's config `video-pose-lift_tcn-27frm-supv_8xb128-160e_h36m.py` (VideoPose3D's
  temporal convolution, 27-frame receptive field, MPJPE loss, Adam 1e-3 with exponential decay);
- `mlp-lifter`: mmpose's `image-pose-lift_tcn_8xb64-200e_h36m.py` (SimpleBaseline3D, Martinez et al. 2017: the
  same network with 1-frame kernels, residual MLP blocks, normalized targets, MSE loss).

Both read the config file shipped in mmpose's wheel and are trained by mmengine's Runner on our prepared
split, written in mmpose's Human3.6M annotation format (`imgname`, `part`, `S`, plus a camera file with each
sequence's image size). Changes to the configs, each for parity with our model: the detector scores go in as
a third input channel (`concat_vis`, as ours), the training pipeline mirrors with the same mmpose flip as ours
(about the image centre; mmpose's H36M config flips about x = 0.5 px, meant for normalized inputs), the
Martinez normalization statistics are computed on our training split, epochs/batch/workers fit the machine,
and the best epoch on our validation clips (mmengine's own MPJPE metric) is kept as safetensors (no pickle
checkpoint is ever loaded).
"""
from __future__ import annotations

import copy
import json
import logging
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from mmengine.hooks import Hook

from core.errors import UserError
from core.io import atomic_path, write_json
from domains.poses.data import Sequences, load
from domains.poses.training import root_relative

log = logging.getLogger("sciformer.poses")
CONFIGS = {"mmpose-videopose3d-27":
           "body_3d_keypoint/video_pose_lift/h36m/video-pose-lift_tcn-27frm-supv_8xb128-160e_h36m.py",
           "mlp-lifter": "body_3d_keypoint/image_pose_lift/h36m/image-pose-lift_tcn_8xb64-200e_h36m.py"}


def peer_settings(section: Mapping[str, Any], method: str) -> Mapping[str, Any]:
    """A peer's config section: its method name with _ for - (config keys take no hyphens)."""
    return section[method.replace("-", "_")]
CANON = 1000.0     # baselines see keypoints in a 1000-px-wide canonical image (real clips are mapped into it)


def config_path(method: str) -> Path:
    import mmpose
    return Path(mmpose.__file__).parent / ".mim" / "configs" / CONFIGS[method]


def canonical(keypoints: np.ndarray, size) -> np.ndarray:
    """Pixels of a (w, h) image -> the canonical 1000-px frame (centre to centre, width to width): the
    VideoPoseLifting codec is invariant to it; the Martinez lifter's pixel statistics need it on real video."""
    w, h = float(size[0]), float(size[1])
    return (keypoints - np.array([w / 2, h / 2])) / (w / 2) * (CANON / 2) + CANON / 2


def write_annotations(seqs: Sequences, folder: Path, split: str) -> None:
    """Our split in mmpose's H36M format: one 'subject' per sequence so mmpose never joins two sequences."""
    names, cams = [], {}
    for s in range(len(seqs)):
        subj, cam = f"S{s}", f"c{int(seqs.seq_camera[s])}"
        names += [f"{subj}_{seqs.seq_clip[s]}.{cam}_{f:06d}.jpg" for f in range(seqs.lengths()[s])]
        cams[(subj, cam)] = {"w": CANON, "h": CANON}
    kp = np.concatenate([canonical(seqs.keypoints[seqs.span(s)], seqs.size[s]) for s in range(len(seqs))])
    part = np.concatenate([kp, seqs.scores[..., None]], -1).astype(np.float32)
    S = np.concatenate([seqs.joints, np.ones((*seqs.joints.shape[:2], 1))], -1).astype(np.float32)
    n = len(names)
    np.savez(folder / f"{split}.npz", imgname=np.array(names), part=part, S=S,
             center=np.zeros((n, 2), np.float32), scale=np.ones(n, np.float32))
    with open(folder / f"cameras_{split}.pkl", "wb") as f:
        pickle.dump(cams, f)


def martinez_stats(train: Sequences) -> dict[str, list]:
    kp = np.concatenate([canonical(train.keypoints[train.span(s)], train.size[s]) for s in range(len(train))])
    rel = root_relative(train.joints)[:, 1:]
    return {"keypoints_mean": kp.mean(0).tolist(), "keypoints_std": kp.std(0).tolist(),
            "target_mean": rel.mean(0).tolist(), "target_std": rel.std(0).tolist()}


def build_config(method: str, section: Mapping[str, Any], folder: Path, seed: int, stats: dict | None):
    """mmpose's config with our data paths and the documented changes."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(config_path(method)))
    opts = peer_settings(section, method)
    codec = copy.deepcopy(cfg.codec)
    codec["concat_vis"] = True
    if method == "mlp-lifter":
        codec.update(stats)
    cfg.model.backbone.in_channels = 3 * 17
    cfg.model.backbone.stem_channels = int(opts["channels"])
    cfg.model.head.in_channels = int(opts["channels"])
    cfg.model.head.decoder = codec
    flip = dict(type="RandomFlipAroundRoot", keypoints_flip_cfg=dict(center_mode="static", center_x=CANON / 2),
                target_flip_cfg=dict(center_mode="static", center_x=0.0))
    pack = cfg.train_pipeline[-1]
    cfg.train_pipeline = [flip, dict(type="GenerateTarget", encoder=codec), pack]
    cfg.val_pipeline = [dict(type="GenerateTarget", encoder=codec), cfg.val_dataloader.dataset.pipeline[-1]]
    for loader, split, pipeline in ((cfg.train_dataloader, "train", cfg.train_pipeline),
                                    (cfg.val_dataloader, "val", cfg.val_pipeline)):
        loader.batch_size = int(opts["batch_size"])
        loader.num_workers, loader.persistent_workers = 0, False
        ds = loader.dataset
        ds.data_root, ds.ann_file, ds.camera_param_file = str(folder), f"{split}.npz", f"cameras_{split}.pkl"
        ds.pipeline = pipeline
        ds.pop("data_prefix", None)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = dict(by_epoch=True, max_epochs=int(opts["epochs"]), val_interval=1)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=-1, save_last=False)   # we keep the best
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=100)
    if opts.get("patience"):   # mmengine's own early stopping, on our trainer's rule: any lower MPJPE is better
        cfg.custom_hooks = [*cfg.get("custom_hooks", []),
                            dict(type="EarlyStoppingHook", monitor="MPJPE", rule="less", min_delta=0.0,
                                 patience=int(opts["patience"]))]
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    cfg.randomness = dict(seed=int(seed))
    cfg.work_dir = str(folder / "work")
    cfg.log_level = "WARNING"
    return cfg


class _KeepBest(Hook):
    """mmengine hook: the weights of the epoch with the lowest validation MPJPE, kept in memory, and a log line
    per epoch (stopping after `patience` epochs without a new best is mmengine's EarlyStoppingHook)."""

    def __init__(self, method: str):
        self.method = method
        self.best, self.best_epoch, self.state, self.history = float("inf"), -1, None, []

    def after_val_epoch(self, runner, metrics=None):
        mpjpe = float((metrics or {}).get("MPJPE", float("inf")))
        epoch = len(self.history)
        self.history.append({"epoch": epoch, "val_mpjpe": mpjpe})
        if mpjpe < self.best:
            self.best, self.best_epoch = mpjpe, epoch
            self.state = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}
        log.info("%s: epoch %d validation MPJPE %.1f mm (best %.1f at epoch %d)", self.method, epoch,
                 mpjpe * 1000, self.best * 1000, self.best_epoch)


def train(method: str, prepared: Path, out_dir: Path, section: Mapping[str, Any], seed: int,
          fingerprint: str = "") -> dict[str, Any]:
    """Train one mmpose peer with mmengine's Runner; write model.safetensors + meta.json to out_dir."""
    from mmengine.runner import Runner
    from safetensors.torch import save_file
    out_dir = Path(out_dir)
    work = out_dir / "mmpose_data"
    work.mkdir(parents=True, exist_ok=True)
    train_seqs, val_seqs = load(prepared, "train"), load(prepared, "val")
    write_annotations(train_seqs, work, "train")
    write_annotations(val_seqs, work, "val")
    stats = martinez_stats(train_seqs) if method == "mlp-lifter" else None
    cfg = build_config(method, section, work, seed, stats)
    torch.set_num_threads(int(section.get("threads", 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = Runner.from_cfg(cfg)
        keep = _KeepBest(method)
        runner.register_hook(keep, priority="LOW")
        runner.train()
    if keep.state is None:
        epochs = peer_settings(section, method)["epochs"]
        raise UserError(f"{method}: mmengine never validated (epochs={epochs}); set it >= 1")
    meta = {"method": method, "model": cfg.model.to_dict(), "codec": cfg.model.head.decoder.to_dict(),
            "best_val_mpjpe": keep.best, "best_epoch": keep.best_epoch, "history": keep.history, "seed": seed,
            "fingerprint": fingerprint}
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in keep.state.items()}, str(tmp))
    write_json(out_dir / "meta.json", meta)
    return meta


def load_model(run_dir: Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild an mmpose peer from its meta.json and load its safetensors weights (no pickle)."""
    from mmpose.registry import MODELS
    from mmpose.utils import register_all_modules
    from safetensors.torch import load_file
    run_dir = Path(run_dir)
    if not (run_dir / "meta.json").exists():
        raise UserError(f"{run_dir}: no trained mmpose baseline (meta.json missing)")
    meta = json.loads((run_dir / "meta.json").read_text())
    register_all_modules(init_default_scope=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MODELS.build(meta["model"])
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    return model.eval(), meta


@torch.no_grad()
def predict(model: torch.nn.Module, meta: Mapping[str, Any], keypoints: np.ndarray, scores: np.ndarray,
            seq_start: np.ndarray, sizes: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Root-relative camera-frame joints [T, 17, 3] (metres) for every frame: the receptive field is centred
    on each frame, edge-padded at sequence ends (mmpose's `pad_video_seq`). The codec encodes each frame on
    its own, so a sequence is encoded once and the windows are slices of it."""
    from mmpose.registry import KEYPOINT_CODECS
    codec = KEYPOINT_CODECS.build(meta["codec"])
    rf = 27 if meta["method"] == "mmpose-videopose3d-27" else 1
    extra = {"camera_param": {"w": CANON, "h": CANON}} if rf > 1 else {}
    windows = []
    for s in range(len(seq_start) - 1):
        lo, hi = int(seq_start[s]), int(seq_start[s + 1])
        kp = canonical(keypoints[lo:hi], sizes[s]).astype(np.float32)
        labels = codec.encode(kp, scores[lo:hi].astype(np.float32), np.zeros((1, 17, 3), np.float32),
                              np.ones((1, 17)), **extra)["keypoint_labels"]          # [17 * 3, N]
        idx = np.clip(np.arange(hi - lo)[:, None] + np.arange(rf)[None, :] - rf // 2, 0, hi - lo - 1)
        windows.append(labels[:, idx].transpose(1, 0, 2))                             # [N, 51, rf]
    x_all = np.concatenate(windows) if windows else np.zeros((0, 51, rf), np.float32)
    out = [model.head.forward(model.backbone(torch.from_numpy(x_all[i:i + batch_size]).float())).numpy()
           for i in range(0, len(x_all), batch_size)]
    pred = np.concatenate(out) if out else np.zeros((0, 17, 3), np.float32)
    if meta["method"] == "mlp-lifter":     # normalized, root removed: undo both
        pred = pred * np.asarray(meta["codec"]["target_std"]) + np.asarray(meta["codec"]["target_mean"])
        pred = np.concatenate([np.zeros((len(pred), 1, 3)), pred], 1)
    return pred.astype(np.float32)
