"""The nir task: NIR spectra -> a property (PLS + a learned correction), on the core's task contract.

Prediction input: a CSV or Parquet table with one row per spectrum, wavelength columns on the model's grid
(names are the wavelengths) and any other columns (passed through unchanged); streamed in chunks. Output:
the table with `<target>`, `<target>_unc` and a status per row.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.domain import Domain
from core.errors import UserError
from core.readers import TableReader, separator_hint
from core.task import BadInput, Prediction, Task, TrainingTask
from domains.spectra import nir, nir_range
from domains.spectra.model import nir_model

SMOKE = ("train.max_steps=3", "train.epochs=1", "train.batch_size=64", "train.progress=false",
         "nir.train.max_steps=3", "nir.pls_max_components=3", "encoder.d_model=16", "encoder.n_layers=1",
         "encoder.d_ff=32", "head.hidden=16")


class NirReader(TableReader):
    """The wavelength grid must be the model's (checked on the header before the full pass)."""

    def __init__(self, meta: Mapping[str, Any]):
        target = meta["target"]
        super().__init__(forbidden=[target, f"{target}_unc", "status", "message"])
        self.meta = meta

    def check(self, path: Path) -> None:
        columns = self.header(path)
        check_grid(path, columns, self.meta)
        waves = set(nir.wavelength_columns(columns))
        self.locate = tuple(c for c in columns if c not in waves)[:2]   # the sample's id in error messages
        super().check(path)


def check_grid(path: Path, columns: list[str], meta: Mapping[str, Any]) -> None:
    grid_columns(columns, meta, path)


def grid_columns(columns: list[str], meta: Mapping[str, Any], path: Path | str = "input") -> list[str]:
    """The wavelength columns in the model's grid order (a file may list them in any order, e.g. descending
    wavenumbers); a grid other than the model's is refused."""
    waves = nir.wavelength_columns(columns)
    want = np.asarray(meta["wavelengths"], float)
    got = np.array([float(w) for w in waves])
    have, need = np.argsort(got, kind="stable"), np.argsort(want, kind="stable")   # either may descend
    if len(got) > 1 and (np.diff(got[have]) == 0).any():
        twice = got[have][1:][np.diff(got[have]) == 0][0]
        raise UserError(f"{path}: wavelength {twice:g} has more than one column; one column per wavelength")
    tol = 1e-3 * max(1.0, float(np.abs(want).max()) / 1000)
    if len(got) != len(want) or not np.allclose(got[have], want[need], rtol=0, atol=tol):
        first = f"{want[0]:g}..{want[-1]:g}" if len(want) else "none"
        found = f"{got.min():g}..{got.max():g}" if len(got) else "none"
        raise UserError(f"{path}: wrong wavelength grid: {len(got)} wavelength columns ({found}) but the model "
                        f"expects {len(want)} ({first}, step {np.diff(want).mean():g}); resample your spectra to "
                        f"the model's grid or train on your own data (nir.dataset=csv){_unit_hint(got, want)}"
                        f"{separator_hint(columns)}")
    ordered = [""] * len(want)
    for k in range(len(want)):      # the k-th smallest wavelength of the file goes where the model has its own
        ordered[need[k]] = waves[have[k]]
    return ordered


def _unit_hint(got: np.ndarray, want: np.ndarray) -> str:
    """The same spectra in other units: micrometres (1.1..2.5 for 1100..2500 nm) or wavenumbers in cm^-1
    (1e7 / nm: 4000..9100 for 1100..2500 nm)."""
    if not len(got) or not len(want):
        return ""
    lo, hi = float(want.min()), float(want.max())

    def covers(values: np.ndarray) -> bool:
        return bool(np.isclose(values.min(), lo, rtol=0.02) and np.isclose(values.max(), hi, rtol=0.02))
    if covers(got * 1000):
        return "; the columns look like micrometres: name them in nm (x 1000), as the model's are"
    if got.min() > 0 and covers(1e7 / got):
        return "; the columns look like wavenumbers (cm^-1): convert to nm (1e7 / cm^-1) and resample"
    return ""


def predict_rows(members, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with a missing, non-numeric or infinite value, or a spectrum outside the calibration range
    (`nir_range`), get a status, a message naming the column or the statistic, and no prediction."""
    meta = members[0].metadata["task"]
    columns = grid_columns(list(frame.columns), meta)
    x = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    status = np.where(np.isnan(x).any(1), "missing_or_non_numeric_value",
                      np.where(np.isinf(x).any(1), "non_finite_value", "ok")).astype(object)
    message = value_messages(frame, columns, x)
    finite, base = status == "ok", meta["base"]
    if finite.any():
        x_pre = nir.preprocess(x[finite], base["preprocess"], base["sg_window"], base["sg_poly"])
        outside, why = nir_range.flagged(x_pre, base, members[0].metadata.get("calibration"))
        rows = np.flatnonzero(finite)[outside]
        status[rows], message[rows] = nir_range.STATUS, why[outside]
    ok = status == "ok"
    target = meta["target"]
    pred, unc = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if ok.any():
        pred[ok], unc[ok] = nir.predict_spectra(members, x[ok])
    out = frame.copy()
    out[target], out[f"{target}_unc"], out["status"], out["message"] = pred, unc, status, message
    return out


def value_messages(frame: pd.DataFrame, columns: list[str], x: np.ndarray) -> np.ndarray:
    """Per row: the first wavelength column without a finite number and what it holds ("" for good rows),
    so a user can find the cell among hundreds of columns."""
    out = np.full(len(x), "", dtype=object)
    bad = ~np.isfinite(x)
    for i in np.flatnonzero(bad.any(1)):
        j = int(np.argmax(bad[i]))
        raw = frame[columns[j]].iloc[i]
        text = "" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else str(raw).strip()
        what = "is blank" if not text else (f"holds {text!r}, not a number" if np.isnan(x[i, j]) else f"holds {text}")
        more = int(bad[i].sum()) - 1
        out[i] = f"column {columns[j]} {what}" + (f" ({more} more such cells in this row)" if more else "")
    return out


class NirTask(Task):
    data_settings = ("task", "nir.dataset", "nir.path", "nir.target", "nir.instrument", "nir.val_fraction",
                     "nir.test_fraction")
    name = "nir"
    description = "NIR spectra -> a property (PLS + learned correction, its share chosen on validation)"
    smoke_overrides = SMOKE

    def prepare(self, cfg, out_dir: Path) -> dict[str, str]:
        return nir.prepare(cfg, out_dir)

    def data_files(self, cfg) -> list[Path]:
        return [Path(str(cfg["nir.path"]))] if cfg["nir.dataset"] == "csv" and cfg["nir.path"] else []

    def build_training(self, cfg, prepared: Path, stage: str, init: Path | None, seed: int) -> TrainingTask:
        meta, train, val, n_train, n_val, model, loss = nir.training_arrays(cfg, prepared)
        return TrainingTask(model, range(n_train), range(n_val), train, loss, meta, val_collate=val)

    def build_model(self, metadata: Mapping[str, Any]):
        return nir_model(metadata)

    def calibrate(self, cfg, prepared: Path, members) -> dict[str, Any]:
        """How much of the learned correction to PLS to keep, chosen on the validation spectra."""
        return nir.calibrate_nir(cfg, prepared, members)

    def evaluate(self, cfg, prepared: Path, members) -> tuple[list[dict], pd.DataFrame]:
        return nir.evaluate(cfg, prepared, members)

    def reader(self, metadata: Mapping[str, Any]) -> NirReader:
        return NirReader(metadata)

    def predict(self, members, batch, out) -> Prediction:
        return Prediction(table=predict_rows(members, batch.data))

    # -- tests and reports --------------------------------------------------------------------------------
    def _spectra(self) -> pd.DataFrame:
        """Three transfer spectra of the default data set (the grid a default-config model expects)."""
        cfg = Domain.config(self.domain, None, [f"task={self.name}"])   # the defaults; not kept for prediction
        data, _ = nir.load_dataset(cfg)
        frame = pd.DataFrame(data["x_new"][:3], columns=[f"{w:g}" for w in data["wavelengths"]])
        frame.insert(0, "sample", ["a", "b", "c"])
        return frame

    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        frame = self._spectra()
        good, bad = Path(folder) / "spectra.csv", Path(folder) / "coarse.csv"
        frame.to_csv(good, index=False)
        frame[["sample", *frame.columns[1::2]]].to_csv(bad, index=False)   # every other wavelength
        return good, bad, "wrong wavelength grid"

    def bad_inputs(self, folder: Path) -> list[BadInput]:
        folder = Path(folder)
        frame = self._spectra()
        first = frame.columns[1]
        text = frame.astype(str)
        cases = {
            "header_only": (frame.iloc[:0], "no data rows", None),
            "target_column_clash": (frame.assign(y="1.0"), "output column(s) ['y']", None),
            "status_column_clash": (frame.assign(status="x"), "output column(s) ['status']", None),
            "wrong_grid": (frame.drop(columns=frame.columns[-1]), "wrong wavelength grid", None),
            "non_numeric_value": (text.assign(**{first: ["0.5", "high", "0.4"]}), "", "missing_or_non_numeric_value"),
            "empty_value": (text.assign(**{first: ["0.5", "", "0.4"]}), "", "missing_or_non_numeric_value"),
            "infinite_value": (text.assign(**{first: ["0.5", "inf", "0.4"]}), "", "non_finite_value"),
            "reversed_spectra": (pd.DataFrame({"sample": frame["sample"]}).join(
                pd.DataFrame(frame.iloc[:, 1:].to_numpy()[:, ::-1], columns=frame.columns[1:])), "",
                nir_range.STATUS),
        }
        out = []
        for name, (table, message, status) in cases.items():
            table.to_csv(path := folder / f"{name}.csv", index=False)
            out.append(BadInput(name, path, message, status))
        lines = frame.to_csv(index=False).splitlines()
        lines[2] += ",0.1"                     # one field too many in the second data row
        (ragged := folder / "extra_field.csv").write_text("\n".join(lines) + "\n")
        out.append(BadInput("extra_field", ragged, "fields"))
        return out

    def report_figures(self, predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
        from domains.spectra import report
        return report.nir_parity(predictions, metrics, Path(out_dir))

