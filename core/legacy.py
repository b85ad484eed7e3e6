"""TEMPORARY bridge for domains still written against the first contract (Domain hooks `build_task`,
`predict_chunk`/`predict_whole`, `validate_input`, one `cfg["task"]` switch inside the domain). It presents
such a domain as one `Task` per name in its config's `task` enum, so the new core (one prediction path, tasks,
the generic workflow) runs it unchanged. Removed once every domain declares its tasks.
"""
from __future__ import annotations

from typing import Any


class LegacyHooks:
    """The first contract's default hooks (Domain inherits them until every domain declares tasks)."""

    stages: tuple[str, ...] = ("train",)
    smoke_overrides: tuple[str, ...] = ()
    streams = True

    def train_settings(self, cfg, stage: str) -> dict[str, Any]:
        return {**cfg["train"], **(cfg.get(f"{stage}.train") or {})}

    def calibrate(self, cfg, prepared, members):
        return None

    def text_columns(self, metadata) -> list[str]:
        return []

    def validate_input(self, path, columns, metadata) -> None:
        pass

    def input_formats(self, metadata) -> tuple[str, ...]:
        return (".csv", ".parquet")

    def output_formats(self, metadata) -> tuple[str, ...]:
        return (".csv", ".parquet")

    def report_figures(self, predictions, metrics, out_dir):
        return []


def is_legacy(domain) -> bool:
    return not domain.tasks and hasattr(domain, "build_task")


LEGACY_NAMES: dict[str, str] = {}   # the task name a single-task first-contract domain will declare
LEGACY_OUTPUTS = {("spectra", "lifetime"): "lifetime_map.npy"}   # the workflow predicts a real image


def legacy_task_names(domain) -> list[str]:
    task = domain.schema().get("properties", {}).get("task", {})
    return list(task.get("enum") or [LEGACY_NAMES.get(domain.name, domain.name)])
