"""The spectra domain: fluorescence-lifetime estimation (task: lifetime) and NIR regression (task: nir)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.config import Config
from core.domain import Domain, LoadedModel, TrainingTask
from core.errors import UserError
from domains.spectra import lifetime, nir, readers
from domains.spectra.model import LIFETIME_TARGETS, lifetime_model, nir_model


class SpectraDomain(Domain):
    name = "spectra"
    description = "photon-count histograms + IRF -> fluorescence lifetimes; NIR spectra -> properties"
    stages = ("train",)
    streams = False   # images need the whole stack (IRF estimate, binning); CSV inputs are read whole too
    smoke_overrides = ("lifetime.n_train=256", "lifetime.n_val=32", "lifetime.n_test=32", "lifetime.n_test_high=16",
                       "lifetime.n_test_ood=16", "lifetime.baseline_pixels=8", "lifetime.compare_pixels=4",
                       "train.max_steps=3", "train.epochs=1", "train.batch_size=64", "train.progress=false",
                       "encoder.d_model=16", "encoder.n_layers=1", "encoder.d_ff=32", "head.hidden=16")

    def __init__(self):
        self._stack_cache: dict[str, tuple] = {}

    def check_config(self, values: Mapping[str, Any]) -> list[str]:
        problems = []
        lt, n = values["lifetime"], values["nir"]
        for key in ("photons", "train_photons", "irf_fwhm_ps", "tau1", "tau2"):
            pair = lt.get(key)
            if pair is not None and pair[0] > pair[1]:
                problems.append(f"lifetime.{key}: [min, max] expected, got {pair}")
        if n["sg_window"] % 2 == 0 or n["sg_window"] <= n["sg_poly"]:
            problems.append(f"nir.sg_window: must be odd and larger than nir.sg_poly ({n['sg_poly']}), "
                            f"got {n['sg_window']}")
        if values["task"] == "nir" and n["dataset"] == "csv" and not (n.get("path") and n.get("target")):
            problems.append("nir.path / nir.target: required when nir.dataset is csv")
        return problems

    def train_settings(self, cfg: Config, stage: str) -> dict[str, Any]:
        """The nir task trains on a few dozen spectra: its own train.* layer (nir.train) sits on top."""
        base = super().train_settings(cfg, stage)
        return {**base, **(cfg.get("nir.train") or {})} if cfg["task"] == "nir" else base

    # -- pipeline hooks ---------------------------------------------------------------------------------
    def prepare(self, cfg: Config, out_dir: Path) -> dict[str, str]:
        return lifetime.prepare(cfg, out_dir) if cfg["task"] == "lifetime" else nir.prepare(cfg, out_dir)

    def build_task(self, cfg: Config, prepared: Path, stage: str, init: Path | None, seed: int) -> TrainingTask:
        if cfg["task"] == "lifetime":
            return lifetime.build_task(cfg, prepared)
        meta, train, val, n_train, n_val, model, loss = nir.training_arrays(cfg, prepared)
        collate = _SplitCollate(train, val, n_train)
        return TrainingTask(model, range(n_train), range(n_train, n_train + n_val), collate, loss, meta)

    def build_model(self, metadata: Mapping[str, Any]):
        return lifetime_model(metadata) if metadata["kind"] == "lifetime" else nir_model(metadata)

    def calibrate(self, cfg: Config, prepared: Path, members: list[LoadedModel]) -> dict[str, Any] | None:
        """nir: how much of the learned correction to PLS to keep, chosen on the validation spectra."""
        return nir.calibrate_nir(cfg, prepared, members) if cfg["task"] == "nir" else None

    def evaluate(self, cfg: Config, prepared: Path, members: list[LoadedModel]) -> tuple[list[dict], pd.DataFrame]:
        kind = members[0].metadata["task"]["kind"]
        if kind != cfg["task"]:
            raise UserError(f"the model was trained for task {kind!r} but the config says task={cfg['task']}; "
                            f"add --set task={kind}")
        return lifetime.evaluate(cfg, prepared, members) if kind == "lifetime" else nir.evaluate(cfg, prepared, members)

    # -- batch prediction ---------------------------------------------------------------------------------
    def input_formats(self, metadata: Mapping[str, Any]) -> tuple[str, ...]:
        return (".csv", *readers.IMAGE_FORMATS) if metadata["kind"] == "lifetime" else (".csv",)

    def output_formats(self, metadata: Mapping[str, Any]) -> tuple[str, ...]:
        # .csv first: the CSV-of-histograms path is the one the contract test exercises
        return (".csv", ".npy") if metadata["kind"] == "lifetime" else (".csv",)

    def output_columns(self, metadata: Mapping[str, Any]) -> list[str]:
        if metadata["kind"] == "lifetime":
            return [*LIFETIME_TARGETS, "photons", "status"]
        return [metadata["target"], f"{metadata['target']}_unc", "status"]

    def validate_input(self, path: Path, columns: list[str], metadata: Mapping[str, Any]) -> None:
        path = Path(path)
        if metadata["kind"] == "nir":
            return _validate_nir_columns(path, columns, metadata)
        if path.suffix.lower() == ".csv":
            counts = [c for c in columns if str(c).startswith("t") and str(c)[1:].isdigit()]
            readers.check_gates(path, len(counts), None, metadata["gates"], None)
            return
        self._read_image(path, metadata)   # reads, checks gates and values; cached for predict_whole

    def _read_image(self, path: Path, metadata: Mapping[str, Any]) -> tuple[np.ndarray, float | None]:
        key = str(Path(path).resolve())
        if key not in self._stack_cache:
            self._stack_cache.clear()
            counts, gate_ps = readers.read_stack(path)
            readers.check_gates(path, counts.shape[-1], gate_ps, metadata["gates"], metadata["gate_ps"])
            readers.check_values(path, counts)
            self._stack_cache[key] = (counts, gate_ps)
        return self._stack_cache[key]

    def predict_whole(self, members: list[LoadedModel], input_path: Path, output_tmp: Path, output_path: Path,
                      on_invalid: str) -> dict[str, Any]:
        from domains.spectra import predict
        meta = members[0].metadata["task"]
        if meta["kind"] == "nir":
            return predict.nir_table(members, Path(input_path), output_tmp, on_invalid)
        if Path(input_path).suffix.lower() == ".csv":
            if Path(output_path).suffix.lower() != ".csv":
                raise UserError(f"{output_path}: a CSV of histograms gives a CSV of estimates; use -o something.csv")
            return predict.lifetime_table(members, Path(input_path), output_tmp, on_invalid)
        if Path(output_path).suffix.lower() != ".npy":
            raise UserError(f"{output_path}: an image gives a lifetime map; use -o something.npy")
        counts, _ = self._read_image(Path(input_path), meta)
        return predict.lifetime_image(members, counts, output_tmp, Path(output_path), on_invalid)

    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        from domains.spectra.flim import FlimSetting, simulate
        folder = Path(folder)
        sim = simulate(FlimSetting(), 3, seed=123)
        counts = sim["counts"].copy()
        counts[1] = 0          # an empty pixel: status too_few_photons
        good, bad = folder / "histograms.csv", folder / "histograms_100_gates.csv"
        pd.DataFrame(counts, columns=[f"t{i}" for i in range(counts.shape[1])]).to_csv(good, index=False)
        pd.DataFrame(counts[:, :100], columns=[f"t{i}" for i in range(100)]).to_csv(bad, index=False)
        return good, bad, "histograms have 100 time gates but the model was trained on 256"

    def report_figures(self, predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
        from domains.spectra import report
        if any(r["task"] == "lifetime" for r in metrics):
            return report.lifetime_figures(predictions, metrics, Path(out_dir))
        return report.nir_parity(predictions, metrics, Path(out_dir))


class _SplitCollate:
    """Train and validation indices share one index space (validation after training)."""

    def __init__(self, train, val, offset: int):
        self.train, self.val, self.offset = train, val, offset

    def __call__(self, idx: list[int]) -> dict[str, Any]:
        if idx and idx[0] >= self.offset:
            return self.val([i - self.offset for i in idx])
        return self.train(idx)


def _validate_nir_columns(path: Path, columns: list[str], metadata: Mapping[str, Any]) -> None:
    waves = nir.wavelength_columns(columns)
    want = np.asarray(metadata["wavelengths"], float)
    if not columns:
        raise UserError(f"{path}: the file is empty; it needs a header of wavelengths and one row per sample")
    got = np.array([float(w) for w in waves])
    if len(got) != len(want) or not np.allclose(got, want, rtol=0, atol=1e-3 * max(1.0, float(np.abs(want).max()) / 1000)):
        first = f"{want[0]:g}..{want[-1]:g}" if len(want) else "none"
        found = f"{got[0]:g}..{got[-1]:g}" if len(got) else "none"
        raise UserError(f"{path}: wrong wavelength grid: {len(got)} wavelength columns ({found}) but the model "
                        f"expects {len(want)} ({first}, step {np.diff(want).mean():g}); resample your spectra to "
                        "the model's grid or train on your own data (nir.dataset=csv)")
    clash = [c for c in (metadata["target"] + "_unc", "status") if c in columns]
    if clash:
        raise UserError(f"{path}: input already has output column(s) {clash}; rename them")
