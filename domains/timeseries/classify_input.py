"""New series to classify: a UEA/UCR `.ts` file, checked before any model loads (`TsReader.check` is exactly
what `validate -i` and `predict` run first), and the output table.

Errors (the file cannot be classified): not UTF-8, not a .ts file, a value that is not a number (its line), a
series with another number of dimensions than the model's, or longer than the encoder's `max_len`.
Statuses (one series the model must not judge; the others are classified):
- `non_finite`: an inf value ('?' is a missing value, which the model reads as such);
- `out_of_range`: a finite value beyond data.OUT_OF_RANGE_SD training standard deviations;
- `no_values`: every value missing;
- `unknown_label`: the file gives the series a label the model was never trained on (the probabilities over
  the trained classes are still written: the true class is not among them).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from core.errors import UserError
from core.readers import Batch, Reader
from domains.timeseries import classify as CL
from domains.timeseries.data import OUT_OF_RANGE_SD

log = logging.getLogger("sciformer.timeseries")


class TsReader(Reader):
    formats = (".ts",)

    def __init__(self, meta: Mapping[str, Any]):
        self.meta = meta

    def read(self, path: Path) -> CL.TsFile:
        ts = CL.read_ts(path, labels_optional=True)
        dims, max_len = self.meta["dims"], int(self.meta["encoder"]["max_len"])
        for k, (s, line) in enumerate(zip(ts.series, ts.lines)):
            if s.shape[1] != dims:
                hint = (f" ({CL.NO_LABEL_AFTER_TRUE})" if ts.has_labels and s.shape[1] == dims - 1
                        and "," in ts.labels[k] else
                        f" ({CL.LABELS_AFTER_FALSE})" if not ts.has_labels and s.shape[1] == dims + 1 else "")
                raise UserError(f"{path}: line {line} (series {k + 1}) has {s.shape[1]} dimensions; the model was "
                                f"trained on {dims}{hint}")
            if len(s) > max_len:
                raise UserError(f"{path}: line {line} (series {k + 1}) has {len(s)} time steps; the model reads at "
                                f"most {max_len} (encoder.max_len): cut the series into pieces, or retrain with a "
                                "larger encoder.max_len")
        return ts

    def check(self, path: Path) -> None:
        self.read(path)

    def batches(self, path: Path, size: int) -> Iterator[Batch]:
        ts = self.read(path)
        for start in range(0, len(ts.series), size):
            stop = min(start + size, len(ts.series))
            part = {"series": ts.series[start:stop], "labels": ts.labels[start:stop] if ts.has_labels else None,
                    "lines": ts.lines[start:stop]}
            yield Batch(part, [f"series {i + 1}" for i in range(start, stop)], start)


def statuses(meta: Mapping[str, Any], series: list[np.ndarray], labels: list[str] | None) -> list[str]:
    mean, std = np.array(meta["mean"]), np.array(meta["std"])
    out = []
    for k, s in enumerate(series):
        if np.isinf(s).any():
            out.append("non_finite")
        elif np.isnan(s).all():
            out.append("no_values")
        elif (np.nan_to_num(np.abs((s - mean) / std)) > OUT_OF_RANGE_SD).any():
            out.append("out_of_range")
        elif labels is not None and labels[k] not in meta["classes"]:
            out.append("unknown_label")
        else:
            out.append("ok")
    return out


def _where(meta: Mapping[str, Any], s: np.ndarray, status: str) -> str:
    """The first value behind a series' status: its dimension and time step (1-based) and the value."""
    z = np.abs((s - np.array(meta["mean"])) / np.array(meta["std"]))
    bad = np.isinf(s) if status == "non_finite" else np.nan_to_num(z) > OUT_OF_RANGE_SD
    t, d = np.argwhere(bad)[0]
    return f"dimension {d + 1}, step {t + 1}: {s[t, d]:g}"


def class_table(members, batch: Batch) -> pd.DataFrame:
    """series (1 = the file's first), length, label (when the file has labels), predicted_class, p_<class>,
    status."""
    meta = members[0].metadata["task"]
    series, labels = batch.data["series"], batch.data["labels"]
    status = statuses(meta, series, labels)
    for k, st in enumerate(status):   # name the line and value once per batch; the rows carry every status
        if st in ("non_finite", "out_of_range"):
            log.warning("series %d (line %d, %s) has status %s: no class is predicted for it%s", batch.first + k + 1,
                        batch.data["lines"][k], _where(meta, series[k], st), st,
                        f"; {sum(x != 'ok' for x in status) - 1} more series without a prediction in this batch"
                        if sum(x != "ok" for x in status) > 1 else "")
            break
    judged = np.array([s in ("ok", "unknown_label") for s in status])
    proba = np.full((len(series), len(meta["classes"])), np.nan)
    if judged.any():
        proba[judged] = CL.class_probabilities(members, [s for s, j in zip(series, judged) if j])
    classes = np.array(meta["classes"], dtype=object)
    out = pd.DataFrame({"series": np.arange(batch.first + 1, batch.first + len(series) + 1),
                        "length": [len(s) for s in series]})
    if labels is not None:
        out["label"] = labels
    out["predicted_class"] = np.where(judged, classes[np.nan_to_num(proba).argmax(1)], "")
    for k, c in enumerate(meta["classes"]):
        out[f"p_{c}"] = proba[:, k]
    out["status"] = status
    return out
