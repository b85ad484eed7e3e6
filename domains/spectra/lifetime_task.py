"""The lifetime task: photon-count histograms + IRF -> (tau1, tau2, A, tau_m), on the core's task contract.

Prediction inputs (see `readers`): an image stack (.sdt, .ptu, .npy, .tif) gives a lifetime map `-o map.npy`
with its siblings in the same output set (map.status.npy, map.png, map.compare.csv; the details -- timing
used, IRF estimate, out-of-range thresholds, MLE comparison -- go to map.npy.meta.json); a CSV of histograms
(t0..t<G-1>, optionally irf0..) gives a CSV of estimates with a status per row. Images stream in tiles of
rows (memory bound: `predict`'s docstring).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from core.errors import UserError
from core.readers import Batch, Reader
from core.task import BadInput, Prediction, Task, TrainingTask
from domains.spectra import lifetime, readers
from domains.spectra.model import lifetime_model
from domains.spectra.predict import (
    OUTPUT_COLUMNS,
    PREDICT_KEYS,
    ImageInput,
    ImageTile,
    MapWriter,
    TableInput,
    options,
    predict_table,
    range_check,
    setting_for,
    table_info,
)

log = logging.getLogger(__name__)
SMOKE = ("lifetime.n_train=256", "lifetime.n_val=32", "lifetime.n_test=32", "lifetime.n_test_high=16",
         "lifetime.n_test_ood=16", "lifetime.baseline_pixels=8", "lifetime.compare_pixels=4",
         "lifetime.baselines=[mle,fast_mle,phasor,prior_median]",
         "train.max_steps=3", "train.epochs=1", "train.batch_size=64", "train.progress=false",
         "encoder.d_model=16", "encoder.n_layers=1", "encoder.d_ff=32", "head.hidden=16")


class LifetimeReader(Reader):
    """Checks an input completely before any model loads (timing, gates, every count, the IRF estimate) and
    keeps what the batches share; images are read tile by tile (a memory map for .npy)."""

    formats = (".csv", *readers.IMAGE_FORMATS)

    def __init__(self, meta: Mapping[str, Any], cfg, on_invalid: str = "mark"):
        self.meta, self.cfg = meta, cfg
        self.missing_ok = on_invalid != "error"     # NaN counts: masked pixels with a status, or refused
        self.opts = options(meta, cfg)
        self._loaded: dict[str, ImageInput | TableInput] = {}

    def _timing(self, path: Path, gates: int, recorded: dict) -> dict:
        get = (lambda k: self.cfg.get(k)) if self.cfg is not None else (lambda k: None)
        return readers.resolve_timing(path, gates, recorded, get("lifetime.stack_gate_ps"),
                                      get("lifetime.stack_period_ns"))

    def load(self, path: Path) -> ImageInput | TableInput:
        key = str(Path(path).resolve())
        if key not in self._loaded:
            path = Path(path)
            self._loaded = {key: self._table(path) if path.suffix.lower() == ".csv" else self._image(path)}
        return self._loaded[key]

    def check(self, path: Path) -> None:
        self.load(path)

    def _image(self, path: Path) -> ImageInput:
        stack, recorded = readers.read_stack(path)
        settable = path.suffix.lower() in readers.STACK_FORMATS     # .sdt/.ptu know their own axes
        if self.cfg is not None and self.cfg.get("lifetime.stack_axes") == "THW":
            if not settable:
                log.warning("%s: lifetime.stack_axes=THW applies to .npy/.tif stacks; this file's own axes are "
                            "used", path)
            elif stack.shape[0] == 1:                # a 2-D T x W array was read as 1 x T x W
                stack = np.swapaxes(stack, 1, 2)
            else:
                stack = np.moveaxis(stack, 0, -1)    # time-first stacks (gated cameras) to H x W x T
        gates = stack.shape[-1]
        timing = self._timing(path, gates, recorded)
        readers.check_gates(path, gates, timing["gate_ps"], self.meta, stack.shape if settable else None)
        readers.check_window(path, stack.shape, timing, self.meta, settable)
        decay, missing = readers.check_stack(path, stack, self.missing_ok)
        if missing:
            log.warning("%s: %d pixel(s) have a NaN or infinite count; they get the status %s and no estimate",
                        path, missing, readers.MISSING)
        irf = readers.irf_from_decay(decay, path)
        setting = setting_for(self.meta, gates, timing)
        peak = readers.irf_peak(irf)
        shift = readers.target_peak(self.meta, peak, setting.gate_ns) - peak
        return ImageInput(path, stack, timing, setting, irf, readers.shift_gates(irf, shift), shift, self.opts)

    def _table(self, path: Path) -> TableInput:
        counts, irf, table = readers.read_table(path)
        if not len(table):
            raise UserError(f"{path}: no data rows (only a header); nothing to predict")
        clash = [c for c in OUTPUT_COLUMNS if c in table.columns]
        if clash:
            raise UserError(f"{path}: input already has output column(s) {clash}; rename them so nothing is "
                            "overwritten")
        timing = self._timing(path, counts.shape[1], {})
        readers.check_gates(path, counts.shape[1], timing["gate_ps"], self.meta)
        readers.check_window(path, counts.shape, timing, self.meta)
        readers.check_values(path, counts, missing_ok=self.missing_ok)
        missing = readers.missing_pixels(counts)
        if missing.all():
            raise UserError(f"{path}: no row has a count in every gate column t0..t{counts.shape[1] - 1}; nothing "
                            "to predict")
        counts = np.where(missing[:, None], 0.0, counts)
        estimated = irf is None
        if estimated:
            irf = np.broadcast_to(readers.estimate_irf(counts[~missing], path), counts.shape).copy()
        elif not np.isfinite(irf).all() or (irf < 0).any() or (irf.sum(1) <= 0).any():
            raise UserError(f"{path}: IRF columns must be finite, >= 0 and not all zero in every row")
        setting = setting_for(self.meta, counts.shape[1], timing)
        counts, irf, shift = readers.align(counts, irf, readers.target_peak(self.meta, readers.irf_peak(irf),
                                                                            setting.gate_ns))
        return TableInput(path, table, counts, irf, estimated, timing, setting, shift, self.opts, missing)

    def count(self, path: Path) -> int | None:
        data = self.load(path)
        return len(data.table) if isinstance(data, TableInput) else int(np.prod(data.stack.shape[:2]))

    def batches(self, path: Path, size: int) -> Iterator[Batch]:
        data = self.load(path)
        if isinstance(data, TableInput):
            yield Batch(data, [f"row {i + 1}" for i in range(len(data.table))], 0)
            return
        h, w, _ = data.stack.shape
        for r0, r1 in readers.row_tiles(h, w, size):
            yield Batch(ImageTile(data, r0, r1), [f"pixel (row {i // w}, column {i % w})"
                                                 for i in range(r0 * w, r1 * w)], r0 * w)


class LifetimeTask(Task):
    name = "lifetime"
    description = "photon-count histograms + IRF -> fluorescence lifetimes (tau1, tau2, A, tau_m) with a status"
    smoke_overrides = SMOKE
    default_output = "lifetime_map.npy"
    prediction_settings = (*(f"lifetime.{k}" for k in PREDICT_KEYS), "lifetime.stack_gate_ps",
                           "lifetime.stack_period_ns", "lifetime.stack_axes")
    parallel_predict = False      # the map is filled tile by tile in the output set
    # prepare simulates the validation and test sets from these (training draws fresh pixels from the same prior)
    data_settings = ("task", *(f"lifetime.{k}" for k in (
        "preset", "instruments", "gates", "gate_ps", "period_ns", "tau1", "tau2", "mono_fraction", "photons",
        "train_photons", "irf_jitter_ns", "irf_fwhm_ps", "irf_shapes", "background", "bins", "patch", "n_val",
        "n_test", "n_test_high", "n_test_ood")))

    def __init__(self, domain):
        super().__init__(domain)
        self._writer: MapWriter | None = None
        self._info: dict[str, Any] = {}

    def prepare(self, cfg, out_dir: Path) -> dict[str, str]:
        return lifetime.prepare(cfg, out_dir)

    def build_training(self, cfg, prepared: Path, stage: str, init: Path | None, seed: int) -> TrainingTask:
        return lifetime.build_task(cfg, prepared, seed)

    def build_model(self, metadata: Mapping[str, Any]):
        return lifetime_model(metadata)

    def calibrate(self, cfg, prepared: Path, members) -> dict[str, Any]:
        """The out-of-range status thresholds, set on simulated calibration pixels (status.py)."""
        from domains.spectra.status import calibrate_threshold
        meta = members[0].metadata["task"]
        return calibrate_threshold(lifetime.prior_of(meta), lifetime.family_from_meta(meta), int(cfg["lifetime.n_val"]),
                                   float(cfg["lifetime.out_of_range_rate"]), seed=int(cfg["seed"]) * 1000 + 5)

    def evaluate(self, cfg, prepared: Path, members) -> tuple[list[dict], pd.DataFrame]:
        from domains.spectra import lifetime_eval
        return lifetime_eval.evaluate(cfg, prepared, members)

    # -- prediction ---------------------------------------------------------------------------------------
    def output_formats(self, metadata: Mapping[str, Any]) -> tuple[str, ...]:
        return (".npy", ".csv")   # a map from an image, a table from a table

    def reader(self, metadata: Mapping[str, Any]) -> LifetimeReader:
        return LifetimeReader(metadata, self.prediction_config, self.on_invalid)

    def predict(self, members, batch: Batch, out) -> Prediction:
        if isinstance(batch.data, TableInput):
            if out.kind != "table":
                raise UserError(f"{batch.data.path}: a CSV of histograms gives a CSV of estimates, not "
                                f"{out.target.name}; use -o something.csv")
            self._info = table_info(members, batch.data)
            return Prediction(table=predict_table(members, batch.data))
        if out.kind != "file" or out.target.suffix.lower() != ".npy":
            raise UserError(f"{batch.data.image.path}: an image gives a lifetime map, not {out.target.name}; use "
                            "-o something.npy")
        if self._writer is None:
            self._writer = MapWriter(out, batch.data.image)
        return Prediction(status=self._writer.write(members, batch.data, self.on_invalid))

    def finish(self, members, out) -> dict[str, Any]:
        """The details of the run for `.meta.json` (timing used, IRF estimate, thresholds, MLE comparison)."""
        if self._writer is None:
            return self._info
        info = {**range_check(members), **self._writer.finish()}
        self._writer = None
        return info

    # -- tests and reports --------------------------------------------------------------------------------
    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        """A 4 x 4 image stack with its timing in a sidecar; the same stack without one (refused)."""
        folder = Path(folder)
        counts = _stack()
        good, bad = folder / "stack.npy", folder / "stack_no_timing.npy"
        np.save(good, counts)
        np.save(bad, counts)
        _sidecar(good)
        return good, bad, "this file records no gate width"

    MASKED_CASES = ("nan_count", "inf_count")

    def bad_inputs(self, folder: Path) -> list[BadInput]:
        folder = Path(folder)
        stack = _stack().astype(np.float64)
        cases: dict[str, tuple[np.ndarray | str, str, dict | str | None]] = {
            "negative_count": (_with(stack, (1, 2, 40), -3), "negative count -3 at pixel (row 1, column 2), gate 40",
                               None),
            "nan_count": (_with(stack, (2, 0, 7), np.nan), "NaN or infinite count at pixel (row 2, column 0)", None),
            "inf_count": (_with(stack, (0, 3, 9), np.inf), "NaN or infinite count at pixel (row 0, column 3)", None),
            "fractional_count": (_with(stack, (3, 3, 30), 2.5), "fractional count 2.5 at pixel (row 3, column 3)",
                                 None),
            "boolean_counts": (stack > 0, "photon counts must be integers (got bool", None),
            "complex_counts": (stack.astype(np.complex64), "photon counts must be integers (got complex64", None),
            "all_zero": (np.zeros_like(stack, dtype=np.uint16), "every count is zero", None),
            "flat": (stack.ravel(), "expected an H x W x T stack", None),
            "too_few_gates": (stack[..., :10], "10 time gates is far outside", None),
            "gate_width_outside_family": (stack, "is outside the", {"gate_ps": 5000.0, "period_ns": 1280.0}),
            "sidecar_not_an_object": (stack, "not a JSON object", "[1, 2]"),
            "histogram_table_to_map": ("table", "a CSV of histograms gives a CSV of estimates", None),
        }
        out = []
        for name, (data, message, sidecar) in cases.items():
            if isinstance(data, str):
                path = folder / f"{name}.csv"
                pd.DataFrame(stack.reshape(-1, stack.shape[-1]).astype(int),
                             columns=[f"t{i}" for i in range(stack.shape[-1])]).to_csv(path, index=False)
            else:
                np.save(path := folder / f"{name}.npy", data)
            _sidecar(path, sidecar)
            # a NaN/infinite count is a masked pixel under mark (a status in the map); refused under error
            out.append(BadInput(name, path, message, on_invalid="error" if name in self.MASKED_CASES else "mark"))
        return out

    def report_figures(self, predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
        from domains.spectra import report
        return report.lifetime_figures(predictions, metrics, Path(out_dir))


def _stack() -> np.ndarray:
    """16 pixels (4 x 4) of the family prior sharing one IRF, 256 gates of 48.9 ps; one empty pixel."""
    from domains.spectra.flim import FlimSetting, simulate
    s = FlimSetting()
    counts = simulate(s, 16, seed=123, irf=simulate(s, 1, seed=124)["irf"][0])["counts"]
    counts = counts.reshape(4, 4, -1).astype(np.uint16)
    counts[1, 1] = 0          # an empty pixel (3x3 binning fills it from its neighbours)
    return counts


def _sidecar(path: Path, content: dict | str | None = None) -> None:
    from domains.spectra.flim import FlimSetting
    s = FlimSetting()
    if content is None:
        content = {"gate_ps": s.gate_ps, "period_ns": s.period_ns}
    Path(f"{path}.json").write_text(content if isinstance(content, str) else json.dumps(content))


def _with(stack: np.ndarray, index: tuple, value: float) -> np.ndarray:
    out = stack.copy()
    out[index] = value
    return out
