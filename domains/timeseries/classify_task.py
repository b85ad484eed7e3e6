"""The `classify` task: variable-length multivariate series (UEA/UCR `.ts`) -> class probabilities. Each time
step is a token, series are packed with cu_seqlens; trained from scratch with its own settings
(`classify.train`, applied by the core)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import UserError
from core.task import BadInput, Prediction, Task, TrainingTask
from domains.timeseries import classify as CL
from domains.timeseries.classify_input import TsReader, class_table


class ClassifyTask(Task):
    data_settings = ("task", "data")     # each task prepares its own files
    name = "classify"
    description = "variable-length multivariate series (.ts) -> class probabilities (packed time-step tokens)"
    datasets = (*CL.UEA, "ts")
    task_defaults = ("data.dataset=japanesevowels",)   # the domain's default, vic_elec, is a forecasting set
    smoke_overrides = ("classify.train.epochs=1", "classify.train.ensemble=2",
                       "classify.minirocket=false", "train.max_steps=3", "train.progress=false",
                       "encoder.d_model=16", "encoder.n_heads=2", "encoder.n_layers=1", "encoder.d_ff=32")

    def prepare(self, cfg: Config, out_dir: Path) -> dict[str, str]:
        return CL.prepare(cfg, out_dir)

    def data_files(self, cfg: Config) -> list[Path]:
        """A `.ts` training file and the *_TEST.ts beside it."""
        files = super().data_files(cfg)
        return files + [p.with_name(p.name.replace("_TRAIN.ts", "_TEST.ts")) for p in files
                        if p.name.endswith("_TRAIN.ts")]

    def build_training(self, cfg: Config, prepared: Path, stage: str, init: Path | None, seed: int) -> TrainingTask:
        d = CL.load(prepared)
        longest = int(d["lengths"].max())
        if longest > int(cfg["encoder.max_len"]):
            raise UserError(f"{prepared}: the longest series has {longest} time steps, more than encoder.max_len="
                            f"{cfg['encoder.max_len']}; raise encoder.max_len (each step is a token)")
        train = [s for s, k in zip(d["series"], d["split"]) if k == "train"]
        stacked = np.concatenate(train)
        mean, std = np.nanmean(stacked, 0), np.nanstd(stacked, 0) + 1e-8
        meta = {"kind": "classify", "dims": int(stacked.shape[1]), "classes": d["classes"].tolist(),
                "mean": mean.tolist(), "std": std.tolist(), "encoder": dict(cfg["encoder"]),
                "hidden": int(cfg["model.hidden"]), "dropout": float(cfg["encoder.dropout"]),
                # rows name your .ts file (Mine_TRAIN.ts -> Mine), as forecasting names a CSV by its file
                "dataset": (Path(str(cfg["data.path"])).name.replace("_TRAIN.ts", "") if cfg["data.dataset"] == "ts"
                            else cfg["data.dataset"])}
        ex = {k: CL.make_examples([s for s, sp in zip(d["series"], d["split"]) if sp == k],
                                  d["labels"][d["split"] == k], mean, std) for k in ("train", "val")}
        return TrainingTask(self.build_model(meta), ex["train"], ex["val"], CL.collate, CL.classify_loss, meta)

    def build_model(self, metadata: Mapping[str, Any]) -> CL.SequenceClassifier:
        return CL.SequenceClassifier(metadata["dims"], len(metadata["classes"]), metadata["encoder"],
                                     metadata["hidden"], metadata["dropout"])

    def evaluate(self, cfg: Config, prepared: Path, members) -> tuple[list[dict], pd.DataFrame]:
        from domains.timeseries.evaluation import evaluate_classify
        return evaluate_classify(cfg, prepared, members)

    # -- prediction ---------------------------------------------------------------------------------------
    def reader(self, metadata: Mapping[str, Any]) -> TsReader:
        return TsReader(metadata)

    def predict(self, members, batch, out) -> Prediction:
        return Prediction(table=class_table(members, batch))

    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        from domains.timeseries.examples import classify_examples
        return classify_examples(Path(folder))

    def bad_inputs(self, folder: Path) -> list[BadInput]:
        from domains.timeseries.examples import classify_bad_inputs
        return classify_bad_inputs(Path(folder))

    def report_figures(self, predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
        from domains.timeseries.report import length_figure, save
        return save(length_figure(predictions), out_dir)
