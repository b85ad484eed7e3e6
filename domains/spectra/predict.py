"""Batch prediction of the spectra domain: lifetime maps from image stacks, estimates for CSV tables of
histograms, and NIR properties for CSV spectra. Main outputs go to the temp path the core renames; side
files (status map, colour map, MLE comparison) are written atomically here."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from core.io import atomic_path
from domains.spectra import fit, lifetime, nir, readers
from domains.spectra.model import LIFETIME_TARGETS

STATUS_CODES = {"ok": 0, "too_few_photons": 1}


def _status(photons: np.ndarray, min_photons: float) -> np.ndarray:
    return np.where(photons >= max(min_photons, 1.0), "ok", "too_few_photons")


def _estimates(members, counts: np.ndarray, irf: np.ndarray, ok: np.ndarray) -> dict[str, np.ndarray]:
    out = {t: np.full(len(counts), np.nan) for t in LIFETIME_TARGETS}
    if ok.any():
        est = lifetime.predict_arrays(members, counts[ok], irf[ok])
        for t in LIFETIME_TARGETS:
            out[t][ok] = est[t]
    return out


def _check_invalid(status: np.ndarray, on_invalid: str, where) -> None:
    if on_invalid == "error" and (status != "ok").any():
        i = int(np.argmax(status != "ok"))
        raise UserError(f"{where(i)}: {status[i]}; use --on-invalid mark|skip to keep going")


def lifetime_table(members, path: Path, tmp: Path, on_invalid: str) -> dict[str, Any]:
    meta = members[0].metadata["task"]
    counts, irf, table = readers.read_table(path, meta["gates"])
    if not len(table):
        raise UserError(f"{path}: no data rows; nothing to predict")
    readers.check_values(path, counts)
    if irf is None:
        irf = np.broadcast_to(readers.estimate_irf(counts), counts.shape).copy()
    elif not np.isfinite(irf).all() or (irf < 0).any() or (irf.sum(1) <= 0).any():
        raise UserError(f"{path}: IRF columns must be finite, >= 0 and not all zero in every row")
    counts, irf, _ = readers.align(counts, irf, readers.target_peak(meta))
    photons = counts.sum(1)
    status = _status(photons, meta["min_photons"])
    _check_invalid(status, on_invalid, lambda i: f"{path}: data row {i + 1}")
    est = _estimates(members, counts, irf, status == "ok")
    out = table.copy()
    for t in LIFETIME_TARGETS:
        out[t] = est[t]
    out["photons"], out["status"] = photons, status
    if on_invalid == "skip":
        out = out[status == "ok"]
    out.to_csv(tmp, index=False)
    return {"rows_in": len(table), "rows_out": len(out), "status": _counts(status)}


def lifetime_image(members, counts: np.ndarray, tmp: Path, output_path: Path, on_invalid: str) -> dict[str, Any]:
    """H x W x T counts -> H x W x 4 float32 map (tau1, tau2, A, tau_m; NaN where status != ok)."""
    meta = members[0].metadata["task"]
    h, w, g = counts.shape
    binned = readers.bin_image(counts, meta["predict_bin"])
    irf_one = readers.estimate_irf(counts)
    flat = binned.reshape(-1, g)
    flat, irf, shift = readers.align(flat, np.broadcast_to(irf_one, flat.shape), readers.target_peak(meta))
    photons = flat.sum(1)
    status = _status(photons, meta["min_photons"])
    _check_invalid(status, on_invalid, lambda i: f"pixel (row {i // w}, column {i % w})")
    est = _estimates(members, flat, irf, status == "ok")
    cube = np.stack([est[t] for t in LIFETIME_TARGETS], -1).reshape(h, w, len(LIFETIME_TARGETS)).astype(np.float32)
    with open(tmp, "wb") as f:
        np.save(f, cube)
    codes = np.vectorize(STATUS_CODES.get)(status).reshape(h, w).astype(np.uint8)
    stem = output_path.with_suffix("")
    with atomic_path(f"{stem}.status.npy") as t:
        with open(t, "wb") as f:
            np.save(f, codes)
    _colour_map(cube[..., 3], Path(f"{stem}.png"))
    compare = _compare_with_mle(members, flat, irf, est, status, int(meta["compare_pixels"]), Path(f"{stem}.compare.csv"))
    return {"rows_in": h * w, "rows_out": h * w, "status": _counts(status), "status_codes": STATUS_CODES,
            "channels": list(LIFETIME_TARGETS), "irf": "estimated from the rising edge of the summed decay",
            "irf_estimate": irf_one.round(6).tolist(), "time_shift_gates": shift, "bin_radius": meta["predict_bin"],
            "mle_comparison": compare}


def _compare_with_mle(members, flat, irf, est, status, n: int, path: Path) -> dict[str, Any]:
    """The classical Poisson MLE on a seeded sample of ok pixels, beside the model (a side file)."""
    ok = np.flatnonzero(status == "ok")
    if n <= 0 or not len(ok):
        return {}
    pick = np.sort(np.random.default_rng(0).choice(ok, size=min(n, len(ok)), replace=False))
    setting = lifetime.setting_from_meta(members[0].metadata["task"])
    mle = fit.mle(np.round(flat[pick]).astype(np.int64), np.asarray(irf[pick]), setting)
    frame = pd.DataFrame({"pixel": pick, "photons": flat[pick].sum(1),
                          **{f"{t}_model": est[t][pick] for t in LIFETIME_TARGETS},
                          **{f"{t}_mle": mle[t] for t in LIFETIME_TARGETS}})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    diff = np.abs(frame.tau_m_model - frame.tau_m_mle)
    return {"pixels": len(pick), "tau_m_mean_abs_diff_ns": float(diff.mean()),
            "tau_m_model_mean": float(frame.tau_m_model.mean()), "tau_m_mle_mean": float(frame.tau_m_mle.mean()),
            "file": path.name}


def _colour_map(tau_m: np.ndarray, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 5))
    finite = tau_m[np.isfinite(tau_m)]
    lo, hi = (np.percentile(finite, [2, 98]) if len(finite) else (0, 1))
    im = ax.imshow(np.ma.masked_invalid(tau_m), cmap="viridis", vmin=lo, vmax=hi)
    fig.colorbar(im, ax=ax, label="amplitude-weighted mean lifetime tau_m (ns)")
    ax.set_title("lifetime map (grey/blank: too few photons)")
    ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def nir_table(members, path: Path, tmp: Path, on_invalid: str) -> dict[str, Any]:
    meta = members[0].metadata["task"]
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty; it needs a header of wavelengths and one row per sample") from None
    if not len(table):
        raise UserError(f"{path}: no data rows; nothing to predict")
    waves = nir.wavelength_columns(list(table.columns))
    x = table[waves].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    ok = np.isfinite(x).all(1)
    status = np.where(ok, "ok", "missing_or_non_numeric_value")
    _check_invalid(status, on_invalid, lambda i: f"{path}: data row {i + 1}")
    target = meta["target"]
    pred, unc = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if ok.any():
        pred[ok], unc[ok] = nir.predict_spectra(members, x[ok])
    out = table.copy()
    out[target], out[f"{target}_unc"], out["status"] = pred, unc, status
    if on_invalid == "skip":
        out = out[ok]
    out.to_csv(tmp, index=False)
    return {"rows_in": len(table), "rows_out": len(out), "status": _counts(status)}


def _counts(status: np.ndarray) -> dict[str, int]:
    keys, n = np.unique(status, return_counts=True)
    return json.loads(json.dumps({str(k): int(v) for k, v in zip(keys, n)}))
