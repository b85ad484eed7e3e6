"""An example domain for the tests, never shipped: a domain is this one folder (found through
SCIFORMER_DOMAIN_PATH here, through `domains/` in the project). Task `mean`: a digit string -> the mean of its
digits (table in, table out, streamed). Task `smooth`: a 1-D series -> its 3-point moving average per element
(a folder of .npy files in, a folder out: the per-token dense head)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.domain import Domain
from core.encoder import DenseHead, Encoder, EncoderConfig, RegressionHead
from core.ensemble import mean_and_spread
from core.metrics import REGRESSION_METRICS, metric_rows
from core.packing import lengths_to_cu_seqlens, segment_mean
from core.readers import FilesReader, TableReader
from core.runs import member_outputs
from core.task import BadInput, Prediction, Task, TrainingTask


def _sequences(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 10, rng.integers(3, 20)) for _ in range(n)]


def _split(n: int) -> np.ndarray:
    return np.array(["train"] * int(0.6 * n) + ["val"] * int(0.2 * n) + ["test"] * (n - int(0.6 * n) - int(0.2 * n)))


class TinyModel(torch.nn.Module):
    def __init__(self, meta):
        super().__init__()
        self.dense = meta["dense"]
        self.embed = torch.nn.Linear(1, meta["encoder"]["d_model"])
        self.encoder = Encoder(EncoderConfig.from_dict(meta["encoder"]))
        d = meta["encoder"]["d_model"]
        self.head = DenseHead(d, 1) if self.dense else RegressionHead(d, 1, hidden=8, dropout=0.0)

    def forward(self, batch):
        h = self.encoder(self.embed(batch["x"][:, None]), batch["cu"], batch["max"])
        return self.head(h)[:, 0] if self.dense else self.head(segment_mean(h, batch["cu"]))[:, 0]


def collate(items):
    lengths = torch.tensor([len(i["x"]) for i in items])
    x = torch.tensor(np.concatenate([i["x"] for i in items]), dtype=torch.float32) / 9.0
    y = [np.atleast_1d(i["y"]) for i in items if i.get("y") is not None]
    return {"x": x, "cu": lengths_to_cu_seqlens(lengths), "max": int(lengths.max()), "size": len(items),
            "y": torch.tensor(np.concatenate(y), dtype=torch.float32) if y else None}


def mse(out, batch):
    return torch.nn.functional.mse_loss(out, batch["y"])


def _target(x: np.ndarray, dense: bool) -> np.ndarray:
    if not dense:
        return np.array([x.mean() / 9.0])
    padded = np.pad(x / 9.0, 1, mode="edge")
    return (padded[:-2] + padded[1:-1] + padded[2:]) / 3.0


class _TinyTask(Task):
    dense = False
    smoke_overrides = ("train.epochs=1",)

    def prepare(self, cfg, out_dir):
        seqs = _sequences(int(cfg["data.n"]), int(cfg["seed"]))
        pd.DataFrame({"digits": ["".join(map(str, s)) for s in seqs], "split": _split(len(seqs))}).to_csv(
            Path(out_dir) / "data.csv", index=False)
        return {}

    def _examples(self, prepared, split):
        frame = pd.read_csv(Path(prepared) / "data.csv", dtype=str)
        rows = frame[frame.split == split].digits
        return [{"x": np.array([int(c) for c in d]), "y": _target(np.array([int(c) for c in d]), self.dense)}
                for d in rows]

    def build_training(self, cfg, prepared, stage, init, seed):
        meta = {"encoder": dict(cfg["encoder"]), "dense": self.dense}
        return TrainingTask(TinyModel(meta), self._examples(prepared, "train"), self._examples(prepared, "val"),
                            collate, mse, meta)

    def build_model(self, metadata):
        return TinyModel(metadata)

    def evaluate(self, cfg, prepared, members):
        test, train = self._examples(prepared, "test"), self._examples(prepared, "train")
        y = np.concatenate([t["y"] for t in test])
        pred, _ = mean_and_spread(member_outputs(members, test, collate, 64))
        base = np.full_like(y, np.concatenate([t["y"] for t in train]).mean())
        rows = [r for method, p in (("sciformer", pred), ("train-mean", base))
                for r in metric_rows(self.name, "tiny", "test", method,
                                     {k: fn(y, p) for k, fn in REGRESSION_METRICS.items()})]
        return rows, pd.DataFrame({"y": y, "y_pred_sciformer": pred})


class MeanTask(_TinyTask):
    name = "mean"
    description = "digit string -> mean digit (table in, table out)"

    def reader(self, metadata):
        return TableReader(required=["digits"], forbidden=["y", "y_unc", "status"],
                           fix="rename your column to 'digits'")

    def predict(self, members, batch, out):
        frame = batch.data.copy()
        texts = frame["digits"].astype(str).tolist()
        ok = np.array([t.isdigit() and 0 < len(t) <= 64 for t in texts])
        mean = np.full(len(texts), np.nan)
        spread = np.full(len(texts), np.nan)
        items = [{"x": np.array([int(c) for c in t])} for t, good in zip(texts, ok) if good]
        if items:
            m, s = mean_and_spread(member_outputs(members, items, collate, 256))
            mean[ok], spread[ok] = m * 9.0, s * 9.0
        frame["y"], frame["y_unc"] = mean, spread
        frame["status"] = np.where(ok, "ok", "not_digits")
        return Prediction(table=frame)

    def example_inputs(self, folder):
        good, bad = Path(folder) / "digits.csv", Path(folder) / "no_digits.csv"
        pd.DataFrame({"id": ["a", "b", "c"], "digits": ["123", "x9", "007"]}).to_csv(good, index=False)
        pd.DataFrame({"id": ["a"], "number": ["1"]}).to_csv(bad, index=False)
        return good, bad, "missing column(s) ['digits']"

    def bad_inputs(self, folder):
        folder = Path(folder)
        cases = {"header_only": "digits\n", "extra_field": "digits\n12,3\n45\n", "not_digits": "digits\nabc\n"}
        for name, text in cases.items():
            (folder / f"{name}.csv").write_text(text)
        return [BadInput("header_only", folder / "header_only.csv", "no data rows"),
                BadInput("extra_field", folder / "extra_field.csv", "fields"),
                BadInput("not_digits", folder / "not_digits.csv", status="not_digits")]


class SmoothTask(_TinyTask):
    name = "smooth"
    description = "series -> 3-point moving average per element (folder in, folder out)"
    dense = True
    default_output = "smoothed"

    def output_formats(self, metadata):
        return ("/",)

    def reader(self, metadata):
        return FilesReader([".npy"], what="series")

    def predict(self, members, batch, out):
        rows, files, good = [], {}, []
        for item, name in zip(batch.data, batch.ids):
            if not item.path.exists():
                rows.append({"file": name, "length": 0, "status": "missing_file"})
                continue
            x = np.load(item.path)
            ok = x.ndim == 1 and 0 < len(x) <= 64 and np.isfinite(x).all()
            rows.append({"file": name, "length": int(x.size), "status": "ok" if ok else "bad_series"})
            if ok:
                good.append((name, x))
        if good:
            outs = member_outputs(members, [{"x": x} for _, x in good], collate, 64, empty_shape=(0,))
            flat, _ = mean_and_spread(outs)
            bounds = np.cumsum([0] + [len(x) for _, x in good])
            for (name, _), a, b in zip(good, bounds[:-1], bounds[1:]):
                files[name] = (flat[a:b] * 9.0).astype(np.float32)
        return Prediction(table=pd.DataFrame(rows), files=files)

    def example_inputs(self, folder):
        good = Path(folder) / "series"
        good.mkdir(exist_ok=True)
        np.save(good / "a.npy", np.array([1.0, 5.0, 3.0, 7.0]))
        np.save(good / "b.npy", np.zeros((2, 2)))   # wrong shape: a per-file status, not a failure
        bad = Path(folder) / "empty_folder"
        bad.mkdir(exist_ok=True)
        return good, bad, "no series files"

    def bad_inputs(self, folder):
        folder = Path(folder)
        np.save(folder / "ok.npy", np.array([1.0, 2.0, 3.0]))
        np.save(folder / "nan.npy", np.array([1.0, np.nan]))
        (folder / "missing.csv").write_text("path\nok.npy\nnot_there.npy\n")
        (folder / "nan_manifest.csv").write_text("path\nok.npy\nnan.npy\n")
        (folder / "no_path_column.csv").write_text("file\nok.npy\n")
        return [BadInput("manifest_missing_file", folder / "missing.csv", status="missing_file"),
                BadInput("non_finite_series", folder / "nan_manifest.csv", status="bad_series"),
                BadInput("manifest_without_path", folder / "no_path_column.csv", "needs a 'path' column")]


class TinyDomain(Domain):
    name = "tiny"
    description = "the tests' example domain (one folder, two tasks)"
    tasks = (MeanTask, SmoothTask)
