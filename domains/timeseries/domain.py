"""The timeseries domain: multivariate forecasting (iTransformer / Gateformer-style, exogenous tokens,
conformal quantiles) and variable-length series classification, on the shared core."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from core.config import Config
from core.domain import Domain, LoadedModel, TrainingTask
from domains.timeseries import classify as CL
from domains.timeseries import closedform as CF
from domains.timeseries import forecast as F
from domains.timeseries.models import Forecaster, forecast_loss
from domains.timeseries.sources import FILE_SETS, WHEEL

FORECAST_SETS, CLASSIFY_SETS = (*WHEEL, *FILE_SETS), (*CL.UEA, "ts")


class TimeseriesDomain(Domain):
    name = "timeseries"
    description = "multivariate series -> forecasts with quantiles (iTransformer/Gateformer) or class labels"
    stages = ("train",)
    streams = False   # a forecast starts after the LAST row of each series: the whole input is needed
    smoke_overrides = ("data.max_rows=900", "forecast.lookback=48", "forecast.horizon=24", "train.epochs=1",
                       "train.max_steps=3", "train.ensemble=2", "train.progress=false", "encoder.d_model=16",
                       "encoder.n_heads=2", "encoder.n_layers=1", "encoder.d_ff=32")

    def check_config(self, values: Mapping[str, Any]) -> list[str]:
        d, problems = values["data"], []
        sets = FORECAST_SETS if values["task"] == "forecast" else CLASSIFY_SETS
        if d["dataset"] not in sets:
            problems.append(f"data.dataset: {d['dataset']!r} is not a {values['task']} dataset; choose one of "
                            f"{', '.join(sets)}")
        if d["dataset"] in ("csv", "ts", "etth1", "ett") and not d.get("path"):
            problems.append(f"data.path: required when data.dataset is {d['dataset']}"
                            + (" (the ETT file, e.g. ETTh1.csv; sciformer does not ship it)"
                               if d["dataset"] in ("etth1", "ett") else ""))
        if d.get("steps") == "rows" and d["dataset"] != "csv":
            problems.append("data.steps: 'rows' is for your own files (data.dataset=csv); shipped sets know theirs")
        if abs(sum(d["sizes"]) - 1.0) > 1e-6:
            problems.append(f"data.sizes: fractions must sum to 1, got {list(d['sizes'])}")
        q = values["forecast"]["quantiles"]
        if not {0.1, 0.9} <= set(q) or list(q) != sorted(q):
            problems.append(f"forecast.quantiles: need an increasing list including 0.1 and 0.9, got {list(q)}")
        return problems

    def train_settings(self, cfg: Config, stage: str) -> dict[str, Any]:
        """Classification trains from scratch with its own settings (classify.train.*)."""
        base = super().train_settings(cfg, stage)
        return {**base, **(cfg.get("classify.train") or {})} if cfg["task"] == "classify" else base

    def prepare(self, cfg: Config, out_dir: Path) -> dict[str, str]:
        return (F.prepare if cfg["task"] == "forecast" else CL.prepare)(cfg, out_dir)

    # -- training ------------------------------------------------------------------------------------
    def build_task(self, cfg: Config, prepared: Path, stage: str, init: Path | None, seed: int) -> TrainingTask:
        if cfg["task"] == "classify":
            return self._classify_task(cfg, prepared)
        lookback, horizon = int(cfg["forecast.lookback"]), int(cfg["forecast.horizon"])
        p = F.Prepared(prepared, calendar=list(cfg["data.calendar"]))
        found = CF.search(p, lookback, horizon, cfg["forecast.ridge_alphas"], cfg["forecast.period"],
                          cfg["forecast.linear_norm"], cfg["forecast.linear_exo"])
        lin = found["best"]
        meta = {"kind": "forecast", "targets": p.targets, "covariates": p.covariates,
                "calendar": list(cfg["data.calendar"]), "scaler": p.scaler.to_dict(), "freq": p.info["freq"],
                "time_column": p.info["time_column"], "lookback": lookback, "horizon": horizon,
                "cycle": {"name": lin["spec"].cycle, "keys": lin["keys"]},
                "linear_norm": lin["spec"].norm, "linear_exo": lin["spec"].exo,
                "arch": cfg["model.arch"], "patch": int(cfg["model.patch"]), "encoder": dict(cfg["encoder"]),
                "allow_missing": bool(cfg["data.allow_missing"]), "quantiles": list(cfg["forecast.quantiles"]),
                "dataset": p.info["dataset"], "closed_form": CF.summary(lin),
                "closed_form_candidates": found["table"]}
        model = self.build_model(meta)
        as_tensor = (lambda a: None if a is None else torch.tensor(a, dtype=torch.float32))
        model.init_linear(as_tensor(lin["weight"].T), as_tensor(lin["bias"]), as_tensor(lin["cycle"]),
                          as_tensor(lin["exo"]))
        collate = F.collate_fn(p.inputs(meta), lookback, horizon, meta["allow_missing"])
        return TrainingTask(model, p.starts(0, lookback, horizon).tolist(), p.starts(1, lookback, horizon).tolist(),
                            collate, forecast_loss, meta, val_metric="val_mse")

    def _classify_task(self, cfg: Config, prepared: Path) -> TrainingTask:
        d = CL.load(prepared)
        train = [s for s, k in zip(d["series"], d["split"]) if k == "train"]
        stacked = np.concatenate(train)
        mean, std = np.nanmean(stacked, 0), np.nanstd(stacked, 0) + 1e-8
        meta = {"kind": "classify", "dims": int(stacked.shape[1]), "classes": d["classes"].tolist(),
                "mean": mean.tolist(), "std": std.tolist(), "encoder": dict(cfg["encoder"]),
                "hidden": int(cfg["model.hidden"]), "dropout": float(cfg["encoder.dropout"]),
                "dataset": cfg["data.dataset"]}
        ex = {k: CL.make_examples([s for s, sp in zip(d["series"], d["split"]) if sp == k],
                                  d["labels"][d["split"] == k], mean, std) for k in ("train", "val")}
        return TrainingTask(self.build_model(meta), ex["train"], ex["val"], CL.collate, CL.classify_loss, meta)

    def build_model(self, metadata: Mapping[str, Any]) -> torch.nn.Module:
        if metadata["kind"] == "classify":
            return CL.SequenceClassifier(metadata["dims"], len(metadata["classes"]), metadata["encoder"],
                                         metadata["hidden"], metadata["dropout"])
        keys = metadata["cycle"]["keys"]
        return Forecaster(len(metadata["targets"]), len(metadata["covariates"]) + len(metadata["calendar"]),
                          metadata["lookback"], metadata["horizon"], metadata["encoder"], arch=metadata["arch"],
                          patch=metadata["patch"], phases=len(keys) if keys else 0,
                          mask_input=metadata["allow_missing"], linear_norm=metadata["linear_norm"],
                          linear_exo=metadata["linear_exo"])

    def calibrate(self, cfg: Config, prepared: Path, members: list[LoadedModel]) -> dict[str, Any] | None:
        """Split-conformal offsets from the validation windows' residuals (forecasting only)."""
        if members[0].metadata["task"]["kind"] != "forecast":
            return None
        return F.calibrate(cfg, prepared, members)

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, cfg: Config, prepared: Path, members: list[LoadedModel]) -> tuple[list[dict], pd.DataFrame]:
        from domains.timeseries.evaluation import evaluate_classify, evaluate_forecast
        meta = members[0].metadata["task"]
        fn = evaluate_forecast if meta["kind"] == "forecast" else evaluate_classify
        return fn(cfg, prepared, members)

    # -- batch prediction ------------------------------------------------------------------------------
    def input_formats(self, metadata: Mapping[str, Any]) -> tuple[str, ...]:
        return (".csv", ".parquet") if metadata["kind"] == "forecast" else (".ts", ".csv", ".parquet")

    def output_columns(self, metadata: Mapping[str, Any]) -> list[str]:
        if metadata["kind"] == "classify":
            return ["predicted_class", *(f"p_{c}" for c in metadata["classes"])]
        return ["unique_id", "ds", "y_pred", *(f"p{round(q * 100):02d}" for q in metadata["quantiles"])]

    def validate_input(self, path: Path, columns: list[str], metadata: Mapping[str, Any]) -> None:
        from domains.timeseries.newdata import validate
        validate(path, columns, metadata)

    def predict_whole(self, members: list[LoadedModel], input_path: Path, output_tmp: Path, output_path: Path,
                      on_invalid: str) -> dict[str, Any]:
        from domains.timeseries.newdata import predict_classes, predict_forecast
        meta = members[0].metadata["task"]
        fn = predict_forecast if meta["kind"] == "forecast" else predict_classes
        return fn(members, input_path, output_tmp, on_invalid)

    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        from domains.timeseries.newdata import example_inputs
        return example_inputs(Path(folder))

    def report_figures(self, predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
        from domains.timeseries.report import figures
        return figures(predictions, metrics, out_dir)

