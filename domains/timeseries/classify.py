"""Multivariate series classification with variable lengths (UEA/UCR sets shipped in aeon's wheel).

Each time step is a token; sequences are packed with `cu_seqlens` (core.packing), so a batch of series of
lengths 7..29 (JapaneseVowels) spends no compute on padding. Baselines on the same split: summary statistics
per dimension + logistic regression, and MiniRocket (minirocket.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from core.encoder import ClassificationHead, Encoder, EncoderConfig
from core.ensemble import class_probabilities as mean_probabilities
from core.errors import UserError
from core.io import atomic_path, file_sha256, package_file
from core.packing import lengths_to_cu_seqlens, segment_mean
from core.readers import decoding_errors
from core.runs import member_outputs

UEA = {"basicmotions": "BasicMotions", "japanesevowels": "JapaneseVowels", "italypowerdemand": "ItalyPowerDemand"}
SEQUENCES = "sequences.npz"


@dataclass
class TsFile:
    """A parsed `.ts` file: [length_i, dims] arrays ('?' = NaN), their labels ("" without labels) and lines."""

    series: list[np.ndarray]
    labels: list[str]
    lines: list[int]
    has_labels: bool


# a header that disagrees with its lines shows as odd dimension counts or numbers: these name the real cause
LABELS_AFTER_FALSE = ("the header says '@classLabel false' but the line seems to end with ':<label>': write "
                      "'@classLabel true <labels>' or remove the labels")
NO_LABEL_AFTER_TRUE = ("the header says '@classLabel true' but the last field looks like a dimension, not a label: "
                       "write '@classLabel false' for unlabelled series")


def read_ts(path: Path, labels_optional: bool = False) -> TsFile:
    """A UEA/UCR `.ts` file. Dimensions are ':'-separated, values ','. A file whose header says
    `@classLabel false` has no label field (labels_optional: new data to classify). Values are parsed as
    written (inf included): the caller decides what a non-finite value means."""
    series, labels, lines, in_data, has_label = [], [], [], False, True
    with decoding_errors(path, ".ts file"), open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if line.lower().startswith("@classlabel"):
                    has_label = line.split()[1].lower() == "true" if len(line.split()) > 1 else False
                in_data = line.lower() == "@data"
                continue
            if not has_label and not labels_optional:
                raise UserError(f"{path}: '@classLabel false': training and test files need class labels")
            *dims, label = line.split(":") if has_label else (*line.split(":"), "")
            try:
                arrays = [np.array([float(v) if v != "?" else np.nan for v in d.split(",")]) for d in dims]
            except ValueError as exc:
                hint = f"; {LABELS_AFTER_FALSE}" if not has_label and len(dims) > 1 and "," not in dims[-1] else ""
                raise UserError(f"{path}: line {n}: {exc}; values must be numbers or '?'{hint}") from None
            if not arrays or len({len(a) for a in arrays}) != 1:
                hint = (f"; {NO_LABEL_AFTER_TRUE}" if has_label and "," in label else
                        f"; {LABELS_AFTER_FALSE}" if not has_label and len(arrays) > 1 and len(arrays[-1]) == 1
                        else "")
                raise UserError(f"{path}: line {n}: dimensions have different lengths {[len(a) for a in arrays]}"
                                f"{hint}")
            series.append(np.stack(arrays, 1))
            labels.append(label.strip())
            lines.append(n)
    if not series:
        raise UserError(f"{path}: no @data rows found; is it a UEA/UCR .ts file (a header, then @data and one "
                        "series per line)?")
    return TsFile(series, labels, lines, has_label)


def _training_file(path: Path) -> TsFile:
    """A training/test file: every value finite or '?' (missing)."""
    ts = read_ts(path)
    for s, n in zip(ts.series, ts.lines):
        if np.isinf(s).any():
            raise UserError(f"{path}: line {n}: a value is not finite (inf); training data must be numbers or '?'")
    return ts


def prepare(cfg, out_dir: Path) -> dict[str, str]:
    name = cfg["data.dataset"]
    if name == "ts":
        train_path = Path(cfg["data.path"] or "")
        if not train_path.name.endswith("_TRAIN.ts"):
            raise UserError("data.path: give the *_TRAIN.ts file; its *_TEST.ts must sit beside it")
        test_path = train_path.with_name(train_path.name.replace("_TRAIN.ts", "_TEST.ts"))
    else:
        train_path = package_file("aeon", "datasets", "data", UEA[name], f"{UEA[name]}_TRAIN.ts",
                                  install="run `make setup` (aeon ships the UEA sets in its wheel)")
        test_path = train_path.with_name(f"{UEA[name]}_TEST.ts")
    for p in (train_path, test_path):
        if not p.exists():
            beside = f"; the *_TEST.ts must sit beside {train_path.name}" if p == test_path else ""
            raise UserError(f"{p}: not found{beside}")
    train_file, test_file = _training_file(train_path), _training_file(test_path)
    train, y_train, test, y_test = train_file.series, train_file.labels, test_file.series, test_file.labels
    classes = sorted(set(y_train))
    unknown = sorted(set(y_test) - set(classes))
    if unknown:
        raise UserError(f"{test_path}: labels {unknown} never occur in {train_path.name}")
    # validation: a seeded stratified-ish fraction of the training file (the test file stays untouched)
    rng = np.random.default_rng(int(cfg["seed"]))
    split = np.array(["train"] * len(train) + ["test"] * len(test), dtype=object)
    val = rng.permutation(len(train))[: max(1, int(round(len(train) * float(cfg["data.val_fraction"]))))]
    split[val] = "val"
    allx = train + test
    lengths = np.array([len(s) for s in allx])
    with atomic_path(Path(out_dir) / SEQUENCES) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, values=np.concatenate(allx), lengths=lengths, split=split.astype(str),
                     labels=np.array([classes.index(c) for c in y_train + y_test]), classes=np.array(classes))
    return {train_path.name: file_sha256(train_path), test_path.name: file_sha256(test_path)}


def load(folder: Path) -> dict[str, Any]:
    with np.load(Path(folder) / SEQUENCES, allow_pickle=False) as f:
        d = {k: f[k] for k in f.files}
    offsets = np.concatenate([[0], np.cumsum(d["lengths"])])
    d["series"] = [d["values"][offsets[i]:offsets[i + 1]] for i in range(len(d["lengths"]))]
    return d


class SequenceClassifier(nn.Module):
    """Packed time steps [T, dims] -> tokens -> encoder (rotary positions restart per series) -> mean pool."""

    def __init__(self, dims: int, n_classes: int, encoder: Mapping[str, Any], hidden: int, dropout: float):
        super().__init__()
        enc = EncoderConfig.from_dict(dict(encoder))
        self.embed = nn.Sequential(nn.Linear(2 * dims, enc.d_model), nn.GELU(), nn.Linear(enc.d_model, enc.d_model))
        self.encoder = Encoder(enc)
        self.head = ClassificationHead(enc.d_model, n_classes, hidden, dropout)

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        x = batch["x"]
        # missing values ('?') are zero-filled and flagged, so the model knows which steps were observed
        tokens = self.embed(torch.cat([torch.nan_to_num(x), x.isnan().float()], -1))
        h = self.encoder(tokens, batch["cu_seqlens"], batch["max_seqlen"])
        return self.head(segment_mean(h, batch["cu_seqlens"]))


def make_examples(series: list[np.ndarray], labels, mean: np.ndarray, std: np.ndarray) -> list[dict]:
    return [{"x": ((s - mean) / std).astype(np.float32), "y": int(y)} for s, y in zip(series, labels)]


def collate(examples: list[dict]) -> dict[str, Any]:
    lengths = torch.tensor([len(e["x"]) for e in examples])
    return {"x": torch.from_numpy(np.concatenate([e["x"] for e in examples])),
            "cu_seqlens": lengths_to_cu_seqlens(lengths), "max_seqlen": int(lengths.max()),
            "y": torch.tensor([e["y"] for e in examples]), "size": len(examples)}


def class_probabilities(members, series: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """The ensemble's mean class probabilities [N, classes] for raw series."""
    meta = members[0].metadata["task"]
    ex = make_examples(series, np.zeros(len(series), int), np.array(meta["mean"]), np.array(meta["std"]))
    return mean_probabilities(member_outputs(members, ex, collate, batch, empty_shape=(0, len(meta["classes"]))))


def classify_loss(out: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
    return nn.functional.cross_entropy(out.float(), batch["y"])


def summary_features(series: list[np.ndarray]) -> np.ndarray:
    """Per dimension: mean, std, min, max, quartiles, first, last, slope, mean |diff|; plus the length."""
    rows = []
    for s in series:
        s = np.nan_to_num(s)
        t = np.linspace(-1, 1, len(s))[:, None]
        slope = (t * (s - s.mean(0))).sum(0) / max((t ** 2).sum(), 1e-9)
        diff = np.abs(np.diff(s, axis=0)).mean(0) if len(s) > 1 else np.zeros(s.shape[1])
        q = np.percentile(s, [25, 50, 75], axis=0)
        rows.append(np.concatenate([s.mean(0), s.std(0), s.min(0), s.max(0), *q, s[0], s[-1], slope, diff, [len(s)]]))
    return np.array(rows)


def fit_predict_baseline(train_series, y_train, test_series, seed: int) -> np.ndarray:
    """Summary statistics + standardized multinomial logistic regression: class probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000, random_state=seed))
    model.fit(summary_features(train_series), y_train)
    proba = np.zeros((len(test_series), int(max(y_train)) + 1))
    proba[:, model.classes_] = model.predict_proba(summary_features(test_series))
    return proba
