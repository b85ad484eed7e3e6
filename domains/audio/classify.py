"""Voice / language identification of clips (5 classes: the prompt folders), on packed log-mel frames.

Each token is `stack` consecutive 10 ms log-mel frames; clips of any length are packed with `cu_seqlens`
(core.packing), so a batch of a 0.3 s digit and a 6 s sentence spends nothing on padding. Training crops are
mixed with noise half of the time (seeded, afresh every batch); validation and test clips are whole and clean.
Baselines on the same split: MFCC statistics + logistic regression (C chosen on validation), and a small CNN
on log-mel (trained by the core trainer on the same crops).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from core.encoder import ClassificationHead, Encoder, EncoderConfig
from core.packing import lengths_to_cu_seqlens, segment_mean
from domains.audio import noise as N

HOP_S = 0.010
FMIN = 100.0   # below it the narrowband mel filters would be narrower than an FFT bin (empty filters)


def fft_size(sample_rate: int) -> int:
    """The power of two holding a 25 ms window (256 at 8 kHz, 512 at 16 kHz)."""
    return 1 << int(np.ceil(np.log2(0.025 * sample_rate)))


def log_mel(audio: np.ndarray, sample_rate: int, n_mels: int) -> np.ndarray:
    """[n] -> [frames, n_mels] log-mel (25 ms windows, 10 ms hop, 100 Hz to Nyquist)."""
    import librosa
    win = int(round(0.025 * sample_rate))
    mel = librosa.feature.melspectrogram(y=audio, sr=sample_rate, n_fft=fft_size(sample_rate),
                                         hop_length=int(HOP_S * sample_rate), win_length=win, n_mels=n_mels,
                                         fmin=FMIN, fmax=sample_rate / 2)
    return np.log(mel + 1e-6).T.astype(np.float32)


def mfcc_stats(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean and standard deviation of 20 MFCCs and their deltas: the classic utterance-level features."""
    import librosa
    m = librosa.feature.mfcc(y=audio, sr=sample_rate, n_mfcc=20, n_fft=fft_size(sample_rate),
                             win_length=int(round(0.025 * sample_rate)), hop_length=int(HOP_S * sample_rate),
                             fmin=FMIN, fmax=sample_rate / 2)
    width = min(9, m.shape[1] - (1 - m.shape[1] % 2))        # odd, and no wider than the clip
    d = librosa.feature.delta(m, width=width) if m.shape[1] >= 3 else np.zeros_like(m)
    return np.concatenate([m.mean(1), m.std(1), d.mean(1), d.std(1)])


class ClipClassifier(nn.Module):
    """Packed log-mel tokens [T, n_mels*stack] -> encoder (rotary positions per clip) -> mean pool -> logits."""

    def __init__(self, n_in: int, n_classes: int, encoder: Mapping[str, Any], hidden: int):
        super().__init__()
        enc = EncoderConfig.from_dict(dict(encoder))
        self.embed = nn.Sequential(nn.Linear(n_in, enc.d_model), nn.GELU(), nn.Linear(enc.d_model, enc.d_model))
        self.encoder = Encoder(enc)
        self.head = ClassificationHead(enc.d_model, n_classes, hidden, enc.dropout)

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        h = self.encoder(self.embed(batch["x"]), batch["cu_seqlens"], batch["max_seqlen"])
        return self.head(segment_mean(h, batch["cu_seqlens"]))


class MelCNN(nn.Module):
    """The baseline: three conv blocks over (mel, time) of a padded log-mel image, masked global average."""

    def __init__(self, n_mels: int, n_classes: int, width: int = 32):
        super().__init__()
        layers, c_in = [], 1
        for c in (width // 2, width, 2 * width):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d((2, 1))]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, n_classes)

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        x, mask = batch["image"], batch["mask"]                 # [B, 1, n_mels, T], [B, T]
        h = self.conv(x).mean(2)                                # [B, C, T]
        h = (h * mask[:, None]).sum(-1) / mask.sum(-1, keepdim=True).clamp_min(1)
        return self.head(h)


class FeatureCollate:
    """Clips -> normalized log-mel batches (packed tokens for the transformer, padded images for the CNN).
    With `augment`, clips are randomly cropped, scaled and mixed with noise from the training side's sources."""

    def __init__(self, sample_rate: int, n_mels: int, stack: int, mean: np.ndarray, std: np.ndarray,
                 augment: dict | None = None, seed: int = 0, layout: str = "packed"):
        self.sr, self.n_mels, self.stack, self.mean, self.std = sample_rate, n_mels, stack, mean, std
        self.augment, self.layout = augment, layout
        self.rng = np.random.default_rng(seed)

    def _augment(self, clip: np.ndarray) -> np.ndarray:
        a = self.augment
        crop = int(a["crop_seconds"] * self.sr)
        if len(clip) > crop:
            start = int(self.rng.integers(0, len(clip) - crop + 1))
            clip = clip[start:start + crop]
        if self.rng.random() < a["noise_prob"]:
            kinds = a["kinds"]
            kind = kinds[int(self.rng.integers(len(kinds)))]
            noise = N.make_noise(kind, len(clip), self.rng, a["music"], a["babble"])
            clip, _ = N.mix_at_snr(clip, noise, float(self.rng.uniform(*a["snr"])))
        return clip * float(10 ** (self.rng.uniform(-1, 1)))     # +-20 dB: the level says nothing of the voice

    def features(self, clip: np.ndarray) -> np.ndarray:
        f = (log_mel(clip, self.sr, self.n_mels) - self.mean) / self.std
        if self.layout == "image":
            return f
        t = -(-len(f) // self.stack) * self.stack
        f = np.pad(f, ((0, t - len(f)), (0, 0)), mode="edge")
        return f.reshape(-1, self.stack * self.n_mels)

    def __call__(self, examples: list[dict]) -> dict[str, Any]:
        feats = [self.features(self._augment(e["audio"]) if self.augment else e["audio"]) for e in examples]
        y = torch.tensor([e["y"] for e in examples])
        lengths = torch.tensor([len(f) for f in feats])
        if self.layout == "image":
            image = torch.zeros(len(feats), 1, self.n_mels, int(lengths.max()))
            mask = torch.zeros(len(feats), int(lengths.max()))
            for i, f in enumerate(feats):
                image[i, 0, :, :len(f)] = torch.from_numpy(f.T)
                mask[i, :len(f)] = 1
            return {"image": image, "mask": mask, "y": y, "size": len(feats)}
        return {"x": torch.from_numpy(np.concatenate(feats)), "cu_seqlens": lengths_to_cu_seqlens(lengths),
                "max_seqlen": int(lengths.max()), "y": y, "size": len(feats)}


def classify_loss(out: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
    return nn.functional.cross_entropy(out.float(), batch["y"])


LOGREG_C = (0.01, 0.1, 1.0, 10.0)


def logreg(c: float, seed: int):
    """Standardized multinomial logistic regression (the MFCC baseline's model)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, random_state=seed))


def fit_logreg(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, seed: int):
    """MFCC statistics + standardized logistic regression; C by validation log-loss (fit on train), then refit
    on train+val. Returns (refit model, C, the train-only fit's validation probabilities at that C)."""
    from sklearn.metrics import log_loss
    labels = np.arange(int(max(train_y.max(), val_y.max())) + 1)
    val_proba = {}
    for c in LOGREG_C:
        fitted = logreg(c, seed).fit(train_x, train_y)
        proba = fitted.predict_proba(val_x)
        val_proba[c] = np.zeros((len(val_x), len(labels)), proba.dtype)   # sklearn's sum check is per dtype
        val_proba[c][:, fitted.classes_] = proba
    scores = {c: log_loss(val_y, p, labels=labels) for c, p in val_proba.items()}
    best = min(scores, key=scores.get)
    final = logreg(best, seed).fit(np.concatenate([train_x, val_x]), np.concatenate([train_y, val_y]))
    return final, best, val_proba[best]
