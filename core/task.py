"""Tasks: what a domain predicts (forecast and classify; lifetime and nir; lift; depth; enhance...).

A domain declares its tasks; the config's `task` key picks one (the first is the default) and the core
dispatches every command to it: prepare -> train (each stage, an ensemble of seeds for the last) ->
calibrate -> evaluate -> predict -> report. A task's settings live in the config section named after it
(`forecast:`, `lifetime:`), and `<task>.train` overrides `train.*` for it. Task code lives in the domain's
own module or folder; the domain class only lists the task classes.

Prediction goes through one path for every task (see ``core.predict``): the task's `reader` validates an
input before any model loads and yields batches of items with ids; `predict` returns a `Prediction` (a
table with a `status` column and/or file artifacts); the core writes them atomically with `.meta.json`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from core.config import Config
from core.outputs import OutputSet
from core.readers import Batch, Reader

# A task's `domain` is its core.domain.Domain and `members` are core.runs.LoadedModel objects; both modules sit
# above this one (they use Task), so those two are annotated as Any here.


@dataclass
class TrainingTask:
    """Everything the core trainer needs for one training stage."""

    model: torch.nn.Module                      # forward(batch: dict) -> whatever `loss` takes
    train_data: Sequence[Any]                   # examples; `collate` turns a list of them into a batch
    val_data: Sequence[Any]
    collate: Callable[[list[Any]], dict[str, Any]]   # training batches (may augment); may set "size"
    # loss(out, batch) -> scalar, or (scalar, {component: value}) to log the components (e.g. magnitude,
    # phase and waveform losses) per epoch in the history
    loss: Callable[[Any, dict[str, Any]], Any]
    metadata: dict[str, Any] = field(default_factory=dict)   # JSON-safe; `Task.build_model` rebuilds from it
    val_metric: str = "val_loss"                # what early stopping minimizes (reported in history)
    val_collate: Callable[[list[Any]], dict[str, Any]] | None = None   # validation batches (no augmentation);
    #                                             default: `collate`
    # val_score(model) -> float to minimize instead of the mean validation loss (MPJPE, -SI-SDR, AbsRel...);
    # called in eval mode under no_grad after every epoch and on the starting weights
    val_score: Callable[[torch.nn.Module], float] | None = None


@dataclass
class Prediction:
    """What `Task.predict` returns for one batch.

    table: output rows (one per input row for streamed tables; one per item otherwise) with a `status`
        column: "ok", or why there is no (trustworthy) value ("invalid_smiles", "out_of_range", ...).
    predicted: which table rows carry a prediction (`--on-invalid skip|error` act on the others); default:
        the rows whose status is "ok".
    files: artifacts written by the core: name -> np.ndarray (.npy), bytes, str, or a callable(path) that
        writes the file. Names: "" = the output itself, ".status.npy" = a sibling of a file output
        (`map.status.npy` beside `map.npy`), "clip.wav" = a file inside a folder output.
    status: per-item statuses to count when there is no table (the pixels of an image).
    locations: where each of those items is in the input (e.g. "track 0, frame 20"), for `--on-invalid error`.
    """

    table: pd.DataFrame | None = None
    predicted: np.ndarray | None = None
    files: dict[str, Any] = field(default_factory=dict)
    status: Sequence[str] | None = None
    locations: Sequence[str] | None = None

    def predicted_mask(self) -> np.ndarray:
        if self.predicted is not None:
            return np.asarray(self.predicted, dtype=bool)
        if self.table is None or "status" not in self.table:
            return np.ones(0 if self.table is None else len(self.table), dtype=bool)
        return (self.table["status"].astype(str) == "ok").to_numpy()


@dataclass
class BadInput:
    """One case of the bad-input suite: `path` must give exit code 2 with `message` in the error (nothing
    written), or, with `status`, succeed and mark the affected items with that status (never a confident
    number for input the model cannot judge). `on_invalid`: the --on-invalid the case runs under (what a
    task marks under mark, it may refuse under error)."""

    name: str
    path: Path
    message: str = ""
    status: str | None = None
    on_invalid: str = "mark"


class Task:
    """Base class of a domain's tasks. Subclasses set `name` and implement the hooks they need."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    stages: ClassVar[tuple[str, ...]] = ("train",)   # training stages in order, e.g. ("pretrain", "train")
    # `--set` overrides for a seconds-scale run on real data: the contract test (parametrized over every
    # registered (domain, task), as timm's tests are over every model) runs the whole pipeline with them
    smoke_overrides: ClassVar[tuple[str, ...]] = ()
    # `--set`-style settings this task uses where the domain's defaults suit another task (e.g. a classify
    # dataset where the domain defaults to a forecasting one): laid over the domain's config.yaml, under the
    # prepared folder's settings and under anything the user gives
    task_defaults: ClassVar[tuple[str, ...]] = ()
    default_output: ClassVar[str] = "predictions.csv"   # what the workflow's predict rule writes (-o)
    # dotted config keys that only `evaluate` reads (its baselines' settings): left out of the trained members'
    # fingerprint, so retuning a baseline does not retrain the model
    evaluation_only: ClassVar[tuple[str, ...]] = ()
    # predict() is a pure function of (members, batch): `predict -j N` may run batches in worker processes.
    # A task that writes into the output set itself (a memory-mapped image filled tile by tile) sets False.
    parallel_predict: ClassVar[bool] = True
    # A folder `evaluate` may fill with artifacts for the report (example recordings, spectrogram arrays,
    # maps) and `report_figures` reads: <metrics>_artifacts/ beside the metrics file, set by the core.
    artifacts_dir: Path | None = None
    # The predict/validate command's resolved config (domain defaults <- --config <- --set), set by the core
    # before `reader` is called: settings a user may change at prediction time (a stack's gate width, a
    # photon threshold). The model's own settings are in the metadata that `reader` receives.
    prediction_config: Config | None = None
    # the command's --on-invalid (mark, skip or error), also set before `reader` is called: a reader may let
    # through under mark/skip what it refuses under error (a masked pixel becomes an item with a status)
    on_invalid: str = "mark"
    # dotted keys (or whole sections) that shape the files `prepare` writes: train and evaluate read them from
    # the prepared folder and refuse a command that gives another value (core/prepared.py)
    data_settings: ClassVar[tuple[str, ...]] = ()
    # dotted keys (or whole sections) a predict command may set for its own run, e.g. ("predict",); any other
    # key it gives must match the trained model's, else predict warns that it cannot apply
    prediction_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, domain: Any):
        self.domain = domain

    def command_settings(self, section: str) -> dict[str, Any]:
        """What the predict command gave under `section` (--config, --set; no defaults), to lay over the
        settings stored with the model: the model's choice stands unless the user overrides it."""
        return self.prediction_config.given_at(section) if self.prediction_config is not None else {}

    # -- configuration ---------------------------------------------------------------------------------
    def train_settings(self, cfg: Config, stage: str) -> dict[str, Any]:
        """train.* <- <task>.train.* <- <stage>.train.* (later layers win), e.g. classify.train.epochs,
        pretrain.train.max_steps."""
        out = dict(cfg["train"])
        for layer in (self.name, stage):
            out.update(cfg.get(f"{layer}.train") or {})
        return out

    # -- pipeline ----------------------------------------------------------------------------------------
    def prepare(self, cfg: Config, out_dir: Path) -> dict[str, str]:
        """Write the prepared data under out_dir; return {file name: sha256} of the inputs it read."""
        raise NotImplementedError

    def check_data(self, cfg: Config) -> list[str]:
        """Problems with the data the config names that show without preparing it (a missing file, a column
        not in its header, an unknown name); `validate` lists them with the config's. By default: every
        `data_files` file must exist."""
        return [f"{p}: file not found (a data file the config names; a relative path is read from {Path.cwd()})"
                for p in self.data_files(cfg) if not p.exists()]

    def data_files(self, cfg: Config) -> list[Path]:
        """The user's own files `prepare` will read, known from the config alone: the workflow makes them
        inputs of its prepare rule, so editing one reruns the run. By default every non-empty setting named
        `path` or `*_file` under the task's `data_settings`."""
        from core.config import leaves, within
        return [Path(str(v)) for k, v in leaves(cfg.to_dict()).items()
                if v and within(k, self.data_settings) and (k.endswith(".path") or k.endswith("_file"))]

    def build_training(self, cfg: Config, prepared: Path, stage: str, init: Path | None, seed: int) -> TrainingTask:
        raise NotImplementedError

    def build_model(self, metadata: Mapping[str, Any]) -> torch.nn.Module:
        """Rebuild an untrained model from checkpoint metadata (weights are loaded by the core)."""
        raise NotImplementedError

    def calibrate(self, cfg: Config, prepared: Path, members: list[Any]) -> dict[str, Any] | None:
        """After the final stage trains: post-hoc calibration on held-out data (split-conformal offsets,
        temperature scaling). The JSON-safe result is saved with the run and reaches every loaded member as
        `metadata["calibration"]`. None: nothing to calibrate."""
        return None

    def evaluate(self, cfg: Config, prepared: Path,
                 members: list[Any]) -> tuple[list[dict], pd.DataFrame]:
        """Model and baselines on the same test split: (metric rows, per-sample predictions frame)."""
        raise NotImplementedError

    # -- prediction ---------------------------------------------------------------------------------------
    def output_formats(self, metadata: Mapping[str, Any]) -> tuple[str, ...]:
        """Allowed `-o` suffixes; "/" = a folder of artifacts (with predictions.csv listing them)."""
        return (".csv", ".parquet")

    def reader(self, metadata: Mapping[str, Any]) -> Reader:
        raise NotImplementedError

    def predict(self, members: list[Any], batch: Batch, out: OutputSet) -> Prediction:
        raise NotImplementedError

    def finish(self, members: list[Any], out: OutputSet) -> dict[str, Any]:
        """After the last batch: write whole-input artifacts (a preview of a filled map); return extra
        stats for `.meta.json`."""
        return {}

    # -- tests and reports ------------------------------------------------------------------------------
    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        """For the contract test: (a valid prediction input, a bad one, a fragment of the promised error)."""
        raise NotImplementedError

    def bad_inputs(self, folder: Path) -> list["BadInput"]:
        """The task's own cases for the bad-input suite (tests/test_bad_input.py), beside the generic ones
        the suite derives from `example_inputs` (empty, missing, corrupt bytes, not UTF-8, output over input,
        interrupted run): header only, wrong columns, wrong types, non-finite, out of range, wrong shape..."""
        return []

    def report_figures(self, predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
        """Plots for the report (a parity plot, forecasts, a lifetime map); return the files written."""
        return []
