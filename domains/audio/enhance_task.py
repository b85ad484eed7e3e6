"""Training the enhancer: fresh seeded mixtures every batch, validation PESQ for early stopping."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.domain import TrainingTask
from domains.audio import corpus as C
from domains.audio import noise as N
from domains.audio import streaming as ST
from domains.audio.enhance_model import build
from domains.audio.losses import enhancement_loss
from domains.audio.metrics import pesq_score
from domains.audio.prepare import VAL, load_mixtures, load_prepared, music_split


class MixingCollate:
    """Turns a list of slot indices into a batch of freshly mixed crops (the slots only set the batch size).

    Its generator advances with every batch, so a run is repeatable for a fixed seed and data; every epoch
    sees new crops, noises, SNRs and rooms."""

    def __init__(self, clips: list[np.ndarray], babble: list[np.ndarray], music: list[np.ndarray], cfg, seed: int):
        self.clips, self.babble, self.music = clips, babble, music
        self.sr = int(cfg["data.sample_rate"])
        self.crop = int(float(cfg["enhance.crop_seconds"]) * self.sr)
        self.snr = tuple(float(s) for s in cfg["enhance.train_snr"])
        self.kinds = tuple(cfg["data.noise_kinds"])
        self.reverb = float(cfg["enhance.reverb_prob"])
        self.rng = np.random.default_rng(seed)

    def crop_clip(self, clip: np.ndarray) -> np.ndarray:
        if len(clip) >= self.crop:
            start = int(self.rng.integers(0, len(clip) - self.crop + 1))
            return clip[start:start + self.crop]
        out = np.zeros(self.crop, np.float32)          # short prompt: placed at random inside silence
        start = int(self.rng.integers(0, self.crop - len(clip) + 1))
        out[start:start + len(clip)] = clip
        return out

    def __call__(self, slots: list[Any]) -> dict[str, Any]:
        noisy, clean = [], []
        for _ in slots:
            speech = self.crop_clip(self.clips[int(self.rng.integers(len(self.clips)))])
            x, y, _ = N.degrade(speech, self.rng, self.snr, self.kinds, self.music, self.babble, self.reverb, self.sr)
            g = ST.level_gain(x)
            noisy.append(x * g)
            clean.append(y * g)
        return {"noisy": torch.from_numpy(np.stack(noisy)), "clean": torch.from_numpy(np.stack(clean)),
                "size": len(slots)}


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def stack_crops(examples: list[dict]) -> dict[str, Any]:
    """Validation crops (fixed mixtures, no augmentation) at the model's input level; early stopping uses
    whole-clip PESQ (val_score), these give the validation loss."""
    gains = [ST.level_gain(e["noisy"]) for e in examples]
    return {"noisy": torch.from_numpy(np.stack([e["noisy"] * g for e, g in zip(examples, gains)])),
            "clean": torch.from_numpy(np.stack([e["clean"] * g for e, g in zip(examples, gains)])),
            "size": len(examples)}


def model_meta(cfg) -> dict[str, Any]:
    return {"kind": "enhance", "sample_rate": int(cfg["data.sample_rate"]), "encoder": dict(cfg["encoder"]),
            "n_blocks": int(cfg["enhance.n_blocks"]), "block_tokens": int(cfg["enhance.block_tokens"]),
            "patch": list(cfg["enhance.patch"]), "hidden": int(cfg["enhance.hidden"]),
            "noise_features": bool(cfg["enhance.noise_features"]),
            "chunk_seconds": float(cfg["enhance.chunk_seconds"])}


def validation_pesq(model, val: dict, sample_rate: int) -> float:
    """Mean PESQ of the enhanced validation mixtures (each clip whole, as at test time)."""
    scores = []
    for x, y in zip(val["noisy"], val["clean"]):
        g = ST.level_gain(x)
        est = model.enhance(torch.from_numpy(x * g)[None])[0].numpy() / g
        scores.append(pesq_score(y, est, sample_rate))
    return float(np.nanmean(scores))


def build_enhance_task(cfg, prepared: Path, seed: int) -> TrainingTask:
    manifest, clips, sr = load_prepared(prepared)
    train_idx = np.flatnonzero(manifest.enhance_fold == "train")
    train_clips = [clips[i] for i in train_idx]
    music = music_split(C.music_tracks(sr), list(cfg["data.music_folds"]))["train"] \
        if "music" in cfg["data.noise_kinds"] else []
    meta = model_meta(cfg)
    model = build(meta)
    val = load_mixtures(Path(prepared) / VAL)
    steps = int(cfg["enhance.steps_per_epoch"]) * int(cfg["train.batch_size"])
    n_fft, hop = model.n_fft, model.hop
    crop = int(float(cfg["enhance.crop_seconds"]) * sr)
    val_crops = [{"noisy": fit_length(x, crop), "clean": fit_length(y, crop)}
                 for x, y in zip(val["noisy"], val["clean"])]
    return TrainingTask(model=model, train_data=list(range(steps)), val_data=val_crops, val_collate=stack_crops,
                        collate=MixingCollate(train_clips, train_clips, music, cfg, seed),
                        loss=lambda out, batch: enhancement_loss(out, batch, n_fft, hop), metadata=meta,
                        val_metric="val_neg_pesq", val_score=lambda m: -validation_pesq(m, val, sr))
