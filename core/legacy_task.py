"""TEMPORARY: the `Task` face of a first-contract domain (see ``core.legacy``). Removed with it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd

from core.legacy import LEGACY_OUTPUTS, LegacyHooks, legacy_task_names
from core.readers import Batch, Reader, TableReader
from core.task import Prediction, Task


class LegacyTask(Task):
    parallel_predict = False

    def __init__(self, domain, name: str):
        super().__init__(domain)
        self.name = name
        self.stages = tuple(getattr(domain, "stages", ("train",)))
        self.default_output = LEGACY_OUTPUTS.get((domain.name, name), "predictions.csv")
        self.smoke_overrides = (*getattr(domain, "smoke_overrides", ()),
                                *((f"task={name}",) if len(legacy_task_names(domain)) > 1 else ()))

    def train_settings(self, cfg, stage):
        return self.domain.train_settings(cfg, stage)

    def prepare(self, cfg, out_dir):
        return self.domain.prepare(cfg, out_dir)

    def build_training(self, cfg, prepared, stage, init, seed):
        return self.domain.build_task(cfg, prepared, stage, init, seed)

    def build_model(self, metadata):
        return self.domain.build_model(metadata)

    def calibrate(self, cfg, prepared, members):
        return self.domain.calibrate(cfg, prepared, members)

    @property
    def calibrates(self) -> bool:
        return type(self.domain).calibrate is not LegacyHooks.calibrate

    def evaluate(self, cfg, prepared, members):
        return self.domain.evaluate(cfg, prepared, members)

    def output_formats(self, metadata):
        return self.domain.output_formats(metadata)

    def reader(self, metadata: Mapping[str, Any]) -> Reader:
        return _LegacyReader(self.domain, metadata)

    def predict(self, members, batch: Batch, out) -> Prediction:
        if not self.domain.streams:
            path = batch.data
            stats = self.domain.predict_whole(members, path, out.path(""), out.target, self.on_invalid)
            return Prediction(status=[k for k, n in stats.get("status", {}).items() for _ in range(n)])
        table = self.domain.predict_chunk(members, batch.data, batch.first, self.on_invalid)
        return Prediction(table=table, predicted=[True] * len(table))   # the domain applied on_invalid itself

    def example_inputs(self, folder):
        return self.domain.example_inputs(folder)

    def report_figures(self, predictions, metrics, out_dir):
        return self.domain.report_figures(predictions, metrics, out_dir)


class _LegacyReader(Reader):
    def __init__(self, domain, metadata):
        self.domain, self.metadata = domain, metadata
        self.formats = tuple(domain.input_formats(metadata))
        self.table = TableReader()

    def check(self, path: Path) -> None:
        columns = self.table.header(path) if path.suffix.lower() in (".csv", ".parquet") else []
        self.domain.validate_input(path, columns, self.metadata)

    def batches(self, path: Path, size: int) -> Iterator[Batch]:
        if not self.domain.streams:
            yield Batch(path, [str(path)], 0)
            return
        text = self.domain.text_columns(self.metadata)
        first = 0
        if path.suffix.lower() == ".parquet":
            chunks = (c for c in self.table.chunks(path, size))
        else:
            chunks = pd.read_csv(path, chunksize=size, dtype={c: "string" for c in text})
        for chunk in chunks:
            yield Batch(chunk, [f"row {first + i + 1}" for i in range(len(chunk))], first)
            first += len(chunk)

    def count(self, path: Path) -> int | None:
        return self.table.count(path) if self.domain.streams and path.suffix.lower() in (".csv", ".parquet") else None
