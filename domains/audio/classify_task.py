"""Training the clip classifier (and the log-mel CNN baseline) through the core trainer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.domain import TrainingTask
from core.ensemble import class_probabilities
from core.runs import member_outputs
from domains.audio import corpus as C
from domains.audio.classify import ClipClassifier, FeatureCollate, MelCNN, classify_loss, log_mel
from domains.audio.prepare import load_prepared, music_split


def fold_examples(manifest, clips, classes: list[str], fold: str) -> list[dict]:
    idx = np.flatnonzero(manifest.prompt_fold == fold)
    return [{"audio": clips[i], "y": classes.index(manifest.voice[i])} for i in idx]


def feature_stats(clips: list[np.ndarray], sr: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.concatenate([log_mel(c, sr, n_mels) for c in clips])
    return stacked.mean(0), stacked.std(0) + 1e-5


def classify_meta(cfg, prepared: Path) -> tuple[dict[str, Any], Any, list[np.ndarray]]:
    manifest, clips, sr = load_prepared(prepared)
    classes = sorted(set(manifest.voice))
    n_mels = int(cfg["classify.n_mels"])
    train_idx = np.flatnonzero(manifest.prompt_fold == "train")
    mean, std = feature_stats([clips[i] for i in train_idx], sr, n_mels)
    meta = {"kind": "classify", "sample_rate": sr, "classes": classes, "n_mels": n_mels,
            "stack": int(cfg["classify.stack"]), "mean": mean.tolist(), "std": std.tolist(),
            "encoder": dict(cfg["encoder"]), "hidden": int(cfg["classify.hidden"])}
    return meta, manifest, clips


def augmentation(cfg, manifest, clips, sr: int) -> dict:
    train = [clips[i] for i in np.flatnonzero(manifest.prompt_fold == "train")]
    music = music_split(C.music_tracks(sr), list(cfg["data.music_folds"]))["train"] \
        if "music" in cfg["data.noise_kinds"] else []
    kinds = tuple(k for k in cfg["data.noise_kinds"] if k != "music" or music)
    return {"crop_seconds": float(cfg["classify.crop_seconds"]), "noise_prob": float(cfg["classify.noise_prob"]),
            "snr": tuple(cfg["classify.noise_snr"]), "kinds": kinds, "music": music, "babble": train}


def build_model(meta) -> ClipClassifier:
    return ClipClassifier(meta["n_mels"] * meta["stack"], len(meta["classes"]), meta["encoder"], meta["hidden"])


def collate_for(meta, augment: dict | None = None, seed: int = 0, layout: str = "packed") -> FeatureCollate:
    return FeatureCollate(meta["sample_rate"], meta["n_mels"], meta["stack"], np.array(meta["mean"], np.float32),
                          np.array(meta["std"], np.float32), augment, seed, layout)


def build_classify_task(cfg, prepared: Path, seed: int, cnn: bool = False) -> TrainingTask:
    meta, manifest, clips = classify_meta(cfg, prepared)
    aug = augmentation(cfg, manifest, clips, meta["sample_rate"])
    layout = "image" if cnn else "packed"
    if cnn:
        meta = {**meta, "kind": "classify-cnn"}
        model = MelCNN(meta["n_mels"], len(meta["classes"]))
    else:
        model = build_model(meta)
    return TrainingTask(model=model, train_data=fold_examples(manifest, clips, meta["classes"], "train"),
                        val_data=fold_examples(manifest, clips, meta["classes"], "val"),
                        collate=collate_for(meta, aug, seed, layout), val_collate=collate_for(meta, None, seed, layout),
                        loss=classify_loss, metadata=meta, val_metric="val_cross_entropy")


def encoder_probabilities(members, examples: list[dict], batch: int = 32) -> np.ndarray:
    """The trained networks' ensemble-mean class probabilities [N, K] (no stacking: see classify_pool)."""
    meta = members[0].metadata["task"]
    layout = "image" if meta["kind"] == "classify-cnn" else "packed"
    logits = member_outputs(members, examples, collate_for(meta, layout=layout), batch,
                            empty_shape=(0, len(meta["classes"])))
    return class_probabilities(logits)
