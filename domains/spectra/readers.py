"""Reading prediction inputs of the lifetime task and checking them against the model.

Images: `.sdt` (Becker & Hickl, via sdtfile), `.ptu` (PicoQuant, via ptufile: photon records histogrammed
into H x W x bins, summed over frames and channels), `.npy` and `.tif`/`.tiff` stacks (H x W x T counts).
Tables: `.csv` with one row per pixel, count columns `t0..t<G-1>` and optionally the pixel's IRF as
`irf0..irf<G-1>`.

The time axis must match the model: same number of gates, and (when the file records it) the same gate
width within 1 %. There is no resampling; train a model for your instrument instead
(`--set lifetime.gates=... --set lifetime.gate_ps=...`).

IRF: real files carry no per-pixel IRF. It is estimated from the data (documented approximation): the
positive part of the gate-to-gate increase of the image-summed decay over its rising edge (a decay
convolved with the IRF rises like the IRF's cumulative distribution), mirrored around its peak (a symmetric
IRF is assumed), background before the rise subtracted. Every pixel gets that one IRF.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.errors import UserError

IMAGE_FORMATS = (".sdt", ".ptu", ".npy", ".tif", ".tiff")


def read_stack(path: Path) -> tuple[np.ndarray, float | None]:
    """(counts H x W x T as float64, gate width in ps or None when the format does not record it)."""
    suffix = path.suffix.lower()
    try:
        if path.stat().st_size == 0:
            raise UserError(f"{path}: the file is empty")
        if suffix == ".sdt":
            import sdtfile
            sdt = sdtfile.SdtFile(path)
            if not sdt.data:
                raise UserError(f"{path}: no data blocks in this .sdt file")
            data, times = np.asarray(sdt.data[0]), np.asarray(sdt.times[0])
            gate_ps = float(times[1] - times[0]) * 1e12 if len(times) > 1 else None
        elif suffix == ".ptu":
            import ptufile
            with ptufile.PtuFile(path) as ptu:
                data = np.asarray(ptu.decode_image(dtype=np.uint32))
                dims, gate_ps = ptu.dims, float(ptu.tcspc_resolution) * 1e12
            # sum frames and channels: T Y X C H -> Y X H
            keep = [i for i, d in enumerate(dims) if d in ("Y", "X", "H")]
            data = data.sum(axis=tuple(i for i in range(data.ndim) if i not in keep))
        elif suffix == ".npy":
            data, gate_ps = np.load(path, allow_pickle=False), None
        else:
            import tifffile
            data, gate_ps = tifffile.imread(path), None
    except UserError:
        raise
    except Exception as exc:  # a corrupt file: name it, never a traceback
        raise UserError(f"{path}: cannot be read as a {suffix} lifetime stack ({type(exc).__name__}: {exc})") from None
    data = np.asarray(data)
    if data.ndim == 2:  # a single row of pixels
        data = data[None]
    if data.ndim != 3:
        raise UserError(f"{path}: expected an H x W x T stack of photon counts, got shape {data.shape}")
    return data.astype(np.float64), gate_ps


def read_table(path: Path, gates: int) -> tuple[np.ndarray, np.ndarray | None, pd.DataFrame]:
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty; it needs a header (t0..t{gates - 1}) and one row per pixel") from None
    counts_cols = [c for c in table.columns if str(c).startswith("t") and str(c)[1:].isdigit()]
    irf_cols = [c for c in table.columns if str(c).startswith("irf") and str(c)[3:].isdigit()]
    check_gates(path, len(counts_cols), None, gates, None)
    if irf_cols and len(irf_cols) != gates:
        raise UserError(f"{path}: {len(irf_cols)} IRF columns but the model has {gates} gates; give irf0..irf{gates - 1}"
                        " or none (the IRF is then estimated from the data)")
    want = [f"t{i}" for i in range(gates)]
    if counts_cols != want:
        raise UserError(f"{path}: count columns must be t0..t{gates - 1} in order")
    counts = table[want].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    irf = table[[f"irf{i}" for i in range(gates)]].apply(pd.to_numeric, errors="coerce").to_numpy(float) if irf_cols else None
    return counts, irf, table


def check_gates(path: Path, n: int, gate_ps: float | None, gates: int, model_gate_ps: float | None) -> None:
    if n != gates:
        raise UserError(f"{path}: histograms have {n} time gates but the model was trained on {gates} gates; "
                        f"use a model trained for this instrument (e.g. --set lifetime.gates={n}"
                        + (f" --set lifetime.gate_ps={gate_ps:.4g}" if gate_ps else "") + ")")
    if gate_ps and model_gate_ps and abs(gate_ps - model_gate_ps) > 0.01 * model_gate_ps:
        raise UserError(f"{path}: gate width {gate_ps:.4g} ps but the model was trained on {model_gate_ps:.4g} ps; "
                        f"train a model for this instrument (--set lifetime.gate_ps={gate_ps:.4g})")


def check_values(path: Path, counts: np.ndarray) -> None:
    """NaN or negative counts are refused with the first offending pixel named (they are not counts)."""
    bad = ~np.isfinite(counts)
    if bad.any():
        where = np.unravel_index(int(np.argmax(bad)), counts.shape)
        raise UserError(f"{path}: NaN or infinite count at {_where(where, counts.ndim)}; photon counts must be finite")
    neg = counts < 0
    if neg.any():
        where = np.unravel_index(int(np.argmax(neg)), counts.shape)
        raise UserError(f"{path}: negative count {counts[where]:g} at {_where(where, counts.ndim)}; photon counts "
                        "must be >= 0 (was a background subtracted? give raw counts)")


def _where(index: tuple, ndim: int) -> str:
    if ndim == 3:
        return f"pixel (row {index[0]}, column {index[1]}), gate {index[2]}"
    return f"data row {index[0] + 1}, gate {index[1]}"


def estimate_irf(counts: np.ndarray) -> np.ndarray:
    """One IRF [G] from the summed decay of all pixels (see the module docstring)."""
    decay = counts.reshape(-1, counts.shape[-1]).sum(0)
    peak = int(np.argmax(decay))
    if peak < 2 or decay[peak] <= 0:
        raise UserError("cannot estimate the IRF: the summed decay peaks in the first gates (or is empty); "
                        "give the IRF explicitly (CSV columns irf0..)")
    pre = decay[: max(1, peak - 8)]
    base = float(np.median(pre))
    rise = np.clip(np.diff(np.clip(decay[: peak + 1] - base, 0, None), prepend=0.0), 0, None)
    top = int(np.argmax(rise))
    irf = np.zeros_like(decay)
    left = rise[: top + 1]
    irf[: top + 1] = left
    right = left[::-1][1:]
    irf[top + 1: top + 1 + len(right)] = right[: max(0, len(decay) - top - 1)]
    return irf / irf.sum()


def align(counts: np.ndarray, irf: np.ndarray, target_peak: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Shift histograms and IRFs (same shift for all) so the IRF peaks at `target_peak`, where the training
    IRFs peak; gates shifted out are dropped, gates shifted in are zero. Returns the shift applied."""
    peak = int(np.round(np.median(np.argmax(irf.reshape(-1, irf.shape[-1]), axis=-1))))
    shift = target_peak - peak
    if shift == 0:
        return counts, irf, 0

    def move(x):
        out = np.zeros_like(x)
        if shift > 0:
            out[..., shift:] = x[..., :-shift]
        else:
            out[..., :shift] = x[..., -shift:]
        return out

    return move(counts), move(irf), shift


def bin_image(counts: np.ndarray, radius: int) -> np.ndarray:
    """Sum each pixel's histogram with its (2r+1)^2 neighbourhood (edges use the pixels that exist)."""
    if radius <= 0:
        return counts
    h, w, _ = counts.shape
    csum = np.pad(counts, ((1, 0), (1, 0), (0, 0))).cumsum(0).cumsum(1)
    r0, r1 = np.clip(np.arange(h) - radius, 0, h), np.clip(np.arange(h) + radius + 1, 0, h)
    c0, c1 = np.clip(np.arange(w) - radius, 0, w), np.clip(np.arange(w) + radius + 1, 0, w)
    return (csum[r1][:, c1] - csum[r0][:, c1] - csum[r1][:, c0] + csum[r0][:, c0])


def target_peak(meta: Mapping[str, Any]) -> int:
    s = meta["setting"]
    return int(round(s["irf_center_gates"] + s["irf_jitter_gates"] / 2))
