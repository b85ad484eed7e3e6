"""The `Domain` contract and its registry.

A domain is one folder under `domains/` (or any installed package) declaring an entry point in the
`sciformer.domains` group. Core discovers domains only through that group, so it never imports `domains`.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import pandas as pd
import torch

from core.config import Config, resolve
from core.errors import UserError

ENTRY_POINT_GROUP = "sciformer.domains"


@dataclass
class TrainingTask:
    """Everything the core trainer needs from a domain for one training stage."""

    model: torch.nn.Module                      # forward(batch: dict) -> whatever `loss` takes
    train_data: Sequence[Any]                   # examples; `collate` turns a list of them into a batch
    val_data: Sequence[Any]
    collate: Callable[[list[Any]], dict[str, Any]]   # training batches (may augment); may set "size"
    # loss(out, batch) -> scalar, or (scalar, {component: value}) to log the components (e.g. magnitude,
    # phase and waveform losses) per epoch in the history
    loss: Callable[[Any, dict[str, Any]], Any]
    metadata: dict[str, Any] = field(default_factory=dict)   # JSON-safe; `Domain.build_model` rebuilds from it
    val_metric: str = "val_loss"                # what early stopping minimizes (reported in history)
    val_collate: Callable[[list[Any]], dict[str, Any]] | None = None   # validation batches (no augmentation);
    #                                             default: `collate`
    # val_score(model) -> float to minimize instead of the mean validation loss (MPJPE, -SI-SDR, AbsRel...);
    # called in eval mode under no_grad after every epoch and on the starting weights
    val_score: Callable[[torch.nn.Module], float] | None = None


class Domain:
    """Base class of every domain. Subclasses set `name`, `description`, `stages` and implement the hooks."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    stages: ClassVar[tuple[str, ...]] = ("train",)   # training stages in order, e.g. ("pretrain", "train")
    # `--set` overrides for a seconds-scale run on real data: the contract test (parametrized over every
    # registered domain) runs prepare -> train -> predict with them, as timm's tests do over every model.
    smoke_overrides: ClassVar[tuple[str, ...]] = ()

    # -- configuration -------------------------------------------------------------------------------
    def folder(self) -> Path:
        """The folder of the module defining the domain class (its config.yaml and schema.json live there)."""
        return Path(inspect.getfile(type(self))).parent

    def default_config_path(self) -> Path:
        return self.folder() / "config.yaml"

    def schema(self) -> dict:
        return json.loads((self.folder() / "schema.json").read_text())

    def check_config(self, values: Mapping[str, Any]) -> list[str]:
        """Cross-field rules a JSON schema cannot express; return problems (key path + fix)."""
        return []

    def train_settings(self, cfg: Config, stage: str) -> dict[str, Any]:
        """The train.* settings of a stage: a section named after the stage may override them
        (e.g. pretrain.train.epochs); a domain with several tasks may add its own layer."""
        return {**cfg["train"], **(cfg.get(f"{stage}.train") or {})}

    def config(self, config_file: str | Path | None = None, overrides: list[str] | None = None) -> Config:
        return resolve(self.name, self.default_config_path(), self.schema(), config_file, overrides,
                       extra_check=self.check_config)

    # -- pipeline hooks ---------------------------------------------------------------------------------
    def prepare(self, cfg: Config, out_dir: Path) -> dict[str, str]:
        """Write the prepared data under out_dir; return {file name: sha256} of the inputs it read."""
        raise NotImplementedError

    def build_task(self, cfg: Config, prepared: Path, stage: str, init: Path | None, seed: int) -> TrainingTask:
        raise NotImplementedError

    def build_model(self, metadata: Mapping[str, Any]) -> torch.nn.Module:
        """Rebuild an untrained model from checkpoint metadata (weights are loaded by the core)."""
        raise NotImplementedError

    def calibrate(self, cfg: Config, prepared: Path, members: list["LoadedModel"]) -> dict[str, Any] | None:
        """After the final stage trains: fit post-hoc calibration on held-out data (e.g. split-conformal
        quantiles from validation residuals, temperature scaling). The JSON-safe result is saved with the run
        and reaches `evaluate`/`predict_*` as `member.metadata["calibration"]`. None: nothing to calibrate."""
        return None

    def evaluate(self, cfg: Config, prepared: Path, members: list["LoadedModel"]) -> tuple[list[dict], pd.DataFrame]:
        """Model and baselines on the same test split: (metric rows, per-sample predictions frame)."""
        raise NotImplementedError

    # -- batch prediction ---------------------------------------------------------------------------
    def output_columns(self, metadata: Mapping[str, Any]) -> list[str]:
        raise NotImplementedError

    def text_columns(self, metadata: Mapping[str, Any]) -> list[str]:
        """Input columns to read as text whatever they look like (an all-empty chunk must not become float)."""
        return []

    def validate_input(self, path: Path, columns: list[str], metadata: Mapping[str, Any]) -> None:
        """Check an input file's header before any model loads; raise UserError naming the fix."""

    # Prediction reads CSV/Parquet row chunks by default (rows independent, any size). A domain whose
    # prediction needs the whole input at once (forecasting after the last row of each series; a lifetime
    # map from an image stack) lists its input/output formats here and implements `predict_whole`.
    def input_formats(self, metadata: Mapping[str, Any]) -> tuple[str, ...]:
        return (".csv", ".parquet")

    def output_formats(self, metadata: Mapping[str, Any]) -> tuple[str, ...]:
        return (".csv", ".parquet")

    streams: ClassVar[bool] = True   # False: core calls `predict_whole` instead of `predict_chunk`

    def predict_whole(self, members: list["LoadedModel"], input_path: Path, output_tmp: Path, output_path: Path,
                      on_invalid: str) -> dict[str, Any]:
        """Predict a whole input; write the main output to `output_tmp` (core renames it to `output_path`
        once complete; side files next to `output_path` must be written atomically too). Return stats with
        rows_in, rows_out and status counts."""
        raise NotImplementedError

    def predict_chunk(self, members: list["LoadedModel"], chunk: pd.DataFrame, first_row: int,
                      on_invalid: str) -> pd.DataFrame:
        """Predict one chunk; keep every input row (unless on_invalid == 'skip') plus output columns."""
        raise NotImplementedError

    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        """For the contract test: (a valid prediction input, a bad one, a fragment of the promised error)."""
        raise NotImplementedError

    def report_figures(self, predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
        """Optional plots for the report (e.g. a parity plot); return the files written."""
        return []


@dataclass
class LoadedModel:
    """One trained ensemble member, ready for inference."""

    model: torch.nn.Module
    metadata: dict[str, Any]
    path: Path
    device: torch.device


# -- registry -------------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Domain]] = {}
_DISCOVERED = False


def register_domain(cls: type[Domain]) -> type[Domain]:
    """Register a domain class by its `name` (also usable as a decorator, e.g. in tests or notebooks)."""
    _REGISTRY[cls.name] = cls
    return cls


def _load(ep: metadata.EntryPoint) -> None:
    if ep.name in _REGISTRY or ep.name in _BROKEN:
        return
    try:
        _REGISTRY[ep.name] = ep.load()
    except Exception as exc:  # a broken third-party domain must not take the others down
        _BROKEN[ep.name] = f"{type(exc).__name__}: {exc}"


def _discover() -> None:
    """Load every registered domain (for listing them); `get_domain` loads only the one it needs, so a CLI
    call does not pay for every domain's imports (rdkit, open3d, ...)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        _load(ep)


_BROKEN: dict[str, str] = {}


def domain_names() -> list[str]:
    """Names of the loadable domains (loads every one: use `registered_names` where names suffice)."""
    _discover()
    return sorted(_REGISTRY)


def registered_names() -> list[str]:
    """Every registered domain name, without importing any domain (e.g. for the CLI's --domain choices)."""
    return sorted({*_REGISTRY, *(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))})


def broken_domains() -> dict[str, str]:
    _discover()
    return dict(_BROKEN)


def get_domain(name: str) -> Domain:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP, name=name):
        _load(ep)
    if name not in _REGISTRY:
        _discover()  # for the error message: which domains exist
    if name not in _REGISTRY:
        why = f" (it failed to load: {_BROKEN[name]})" if name in _BROKEN else ""
        raise UserError(f"unknown domain {name!r}{why}; known domains: {', '.join(sorted(_REGISTRY)) or 'none'}"
                        " (run `sciformer list`; install the project with `pip install -e .` to register them)")
    return _REGISTRY[name]()


def iter_domains() -> Iterator[Domain]:
    for name in domain_names():
        yield _REGISTRY[name]()
