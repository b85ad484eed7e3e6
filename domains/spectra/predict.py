"""Lifetime prediction: image stacks -> lifetime maps, tile by tile; CSV tables of histograms -> estimates.

An image is read in tiles of whole rows (`lifetime_task.LifetimeReader`: about --chunk-size pixels each,
plus `predict_bin` rows above and below for the neighbourhood binning) and the map, the status map and a
seeded sample of pixels for the MLE comparison are filled tile by tile (`MapWriter`): memory-mapped outputs
in the output set's staging folder, so the peak memory is a few copies of one tile's histograms (float64:
(rows + 2 * predict_bin) x W x T x 8 bytes) plus the model's batch, plus the H x W tau_m plane for the preview
at the end (4 bytes a pixel) -- whatever the stack's size, when it is a memory-mapped `.npy`. (`.sdt`, `.ptu`
and `.tif` files are decoded whole by their libraries, in their own integer type.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.errors import UserError
from core.io import save_figure
from domains.spectra import fit_fast, lifetime, readers
from domains.spectra import status as status_check
from domains.spectra.flim import FlimSetting
from domains.spectra.model import LIFETIME_TARGETS
from domains.spectra.status import STATUS_CODES

OUTPUT_COLUMNS = (*LIFETIME_TARGETS, "photons", "status")
PREDICT_KEYS = ("min_photons", "predict_bin", "compare_pixels")   # prediction settings: the config's at predict time
IRF_NOTE = "estimated from the rising edge of the summed decay"


def setting_for(meta, gates: int, timing: dict) -> FlimSetting:
    """The model's prior at the input's acquisition setting."""
    return lifetime.prior_of(meta).with_(gates=gates, gate_ps=timing["gate_ps"], period_ns=timing["period_ns"])


def options(meta: Mapping[str, Any], cfg) -> dict:
    """Prediction settings: the model's (stored at training), overridden by those the predict command gives
    (--set lifetime.min_photons=20, --config)."""
    given = cfg.given_at("lifetime") if cfg is not None else {}
    return {k: given.get(k, meta[k]) for k in PREDICT_KEYS}


@dataclass
class ImageInput:
    """A checked image stack and what every tile shares (made once by the reader, before any model loads)."""

    path: Path
    stack: np.ndarray        # H x W x T counts in the file's dtype (a memory map for .npy)
    timing: dict
    setting: FlimSetting
    irf_estimate: np.ndarray  # [T], as estimated from the data
    irf: np.ndarray          # [T], shifted to where the model's training IRFs peak
    shift: int
    opts: dict

    def tile(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows r0..r1 as [pixels, T] float64, binned over the neighbourhood and shifted like the IRF, and the
        mask [pixels] of those whose own histogram has a NaN or infinite count (masked pixels: they add
        nothing to their neighbours' bins)."""
        h, _, g = self.stack.shape
        radius = int(self.opts["predict_bin"])
        lo, hi = max(0, r0 - radius), min(h, r1 + radius)
        block = np.asarray(self.stack[lo:hi], dtype=np.float64)
        missing = readers.missing_pixels(block)
        if missing.any():
            block = np.where(missing[..., None], 0.0, block)
        binned = readers.bin_image(block, radius)[r0 - lo:r1 - lo]
        return readers.shift_gates(binned.reshape(-1, g), self.shift), missing[r0 - lo:r1 - lo].ravel()


@dataclass
class ImageTile:
    image: ImageInput
    r0: int
    r1: int


@dataclass
class TableInput:
    """A checked CSV of histograms (read whole: its IRF may be estimated from every row)."""

    path: Path
    table: pd.DataFrame       # the input's columns as text (written back unchanged)
    counts: np.ndarray        # [n, T] shifted
    irf: np.ndarray           # [n, T] shifted (every row the same when estimated)
    estimated: bool
    timing: dict
    setting: FlimSetting
    shift: int
    opts: dict
    missing: np.ndarray       # [n] rows with a NaN, infinite or blank count (their counts are zero above)


def statuses(members, counts: np.ndarray, irf: np.ndarray, setting: FlimSetting, min_photons: float,
             missing: np.ndarray | None = None) -> np.ndarray:
    """missing_or_non_finite_count (`missing` [n]), too_few_photons, then the out-of-range test (status.py) on
    the rest; irf [G] (one for all) or [n, G]."""
    photons = counts.sum(1)
    out = np.where(photons >= max(min_photons, 1.0), "ok", "too_few_photons").astype(object)
    if missing is not None:
        out[missing] = readers.MISSING
    cal = members[0].metadata.get("calibration") or {}
    threshold = cal.get("out_of_range_z")
    ok = np.flatnonzero(out == "ok")
    if threshold is not None and len(ok):
        one = np.ndim(irf) == 1
        z = status_check.z_scores(counts[ok], irf if one else irf[ok], setting, cal.get("out_of_range_sys", 0.0))
        ref = irf if one else np.median(irf[ok], 0)
        out[ok] = status_check.reasons(counts[ok], ref, setting, z > threshold)
    return out


def range_check(members) -> dict[str, Any]:
    cal = members[0].metadata.get("calibration") or {}
    if cal.get("out_of_range_z") is None:
        return {"out_of_range_check": "off: the model has no calibrated threshold (retrain it)"}
    return {"out_of_range_check": {"phasor_z_threshold": cal["out_of_range_z"],
                                   "systematic": cal.get("out_of_range_sys"),
                                   "false_flag_rate_on_calibration": cal["out_of_range_rate"]}}


def estimates(members, counts: np.ndarray, irf: np.ndarray, ok: np.ndarray, setting) -> dict[str, np.ndarray]:
    out = {t: np.full(len(counts), np.nan) for t in LIFETIME_TARGETS}
    if ok.any():
        est = lifetime.predict_arrays(members, counts[ok], np.broadcast_to(irf, counts.shape)[ok], setting)
        for t in LIFETIME_TARGETS:
            out[t][ok] = est[t]
    return out


def predict_table(members, data: TableInput) -> pd.DataFrame:
    status = statuses(members, data.counts, data.irf[0] if data.estimated else data.irf, data.setting,
                      data.opts["min_photons"], data.missing)
    est = estimates(members, data.counts, data.irf, status == "ok", data.setting)
    out = data.table.copy()
    for t in LIFETIME_TARGETS:
        out[t] = est[t]
    out["photons"], out["status"] = np.where(data.missing, np.nan, data.counts.sum(1)), status
    return out


def table_info(members, data: TableInput) -> dict[str, Any]:
    return {**range_check(members), "timing": data.timing, "time_shift_gates": data.shift,
            "irf": IRF_NOTE if data.estimated else "given (columns irf0..)"}


class MapWriter:
    """Fills the H x W x 4 float32 map (tau1, tau2, A, tau_m; NaN where status != ok) and the H x W uint8
    status map (codes: STATUS_CODES) in the output set, tile by tile, and keeps the MLE comparison's sample."""

    def __init__(self, out, image: ImageInput):
        h, w, _ = image.stack.shape
        self.image, self.out = image, out
        self.cube = np.lib.format.open_memmap(out.path(""), "w+", np.float32, (h, w, len(LIFETIME_TARGETS)))
        self.codes = np.lib.format.open_memmap(out.path(".status.npy"), "w+", np.uint8, (h, w))
        self.sample = PixelSample(int(image.opts["compare_pixels"]))
        self.counts: dict[str, int] = {}

    def write(self, members, tile: ImageTile, on_invalid: str) -> list[str]:
        img, w = self.image, self.image.stack.shape[1]
        flat, missing = img.tile(tile.r0, tile.r1)
        status = statuses(members, flat, img.irf, img.setting, img.opts["min_photons"], missing)
        ok = status == "ok"
        if on_invalid == "error" and not ok.all():
            i = int(np.argmax(~ok)) + tile.r0 * w
            raise UserError(f"{img.path}: pixel (row {i // w}, column {i % w}): {status[i - tile.r0 * w]}; use "
                            "--on-invalid mark to keep going (the map is NaN there)")
        est = estimates(members, flat, img.irf, ok, img.setting)
        values = np.stack([est[t] for t in LIFETIME_TARGETS], -1).astype(np.float32)
        self.cube[tile.r0:tile.r1] = values.reshape(tile.r1 - tile.r0, w, -1)
        self.codes[tile.r0:tile.r1] = np.vectorize(STATUS_CODES.get, otypes=[np.uint8])(status).reshape(-1, w)
        self.sample.add(tile.r0 * w + np.flatnonzero(ok), flat[ok], values[ok])
        return list(status)

    def finish(self) -> dict[str, Any]:
        img = self.image
        self.cube.flush(), self.codes.flush()
        _colour_map(np.asarray(self.cube[..., LIFETIME_TARGETS.index("tau_m")]), self.out.path(".png"))
        del self.cube, self.codes
        compare = {}
        if self.sample.counts is not None:
            compare = self.sample.compare_with_mle(img.irf, img.setting, self.out.path(".compare.csv"))
        return {"timing": img.timing, "channels": list(LIFETIME_TARGETS), "status_codes": STATUS_CODES,
                "irf": IRF_NOTE, "irf_estimate": img.irf_estimate.round(6).tolist(), "time_shift_gates": img.shift,
                "bin_radius": int(img.opts["predict_bin"]), "mle_comparison": compare}


class PixelSample:
    """A seeded uniform sample of `n` ok pixels, kept while tiles stream by: each pixel's key is a fixed hash
    of its index, and the n smallest keys win (the same pixels whatever the tile size)."""

    def __init__(self, n: int):
        self.n = n
        self.keys, self.pixels = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        self.counts, self.values = None, None

    def add(self, pixels: np.ndarray, counts: np.ndarray, values: np.ndarray) -> None:
        if self.n <= 0 or not len(pixels):
            return
        keys = pixels.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)   # Fibonacci hashing (wraps mod 2^64)
        both = lambda a, b: b if a is None else np.concatenate([a, b])  # noqa: E731
        keys, px = both(self.keys, keys), both(self.pixels, pixels)
        counts, values = both(self.counts, counts), both(self.values, values)
        keep = np.argsort(keys, kind="stable")[: self.n]
        self.keys, self.pixels, self.counts, self.values = keys[keep], px[keep], counts[keep], values[keep]

    def compare_with_mle(self, irf: np.ndarray, setting: FlimSetting, path: Path) -> dict[str, Any]:
        """The batched Poisson MLE (same likelihood as the reference fitter) on the sampled pixels."""
        order = np.argsort(self.pixels)
        counts, values = self.counts[order], self.values[order]
        mle = fit_fast.fit_fast(np.round(counts), np.broadcast_to(irf, counts.shape).copy(), setting)
        frame = pd.DataFrame({"pixel": self.pixels[order], "photons": counts.sum(1),
                              **{f"{t}_model": values[:, k] for k, t in enumerate(LIFETIME_TARGETS)},
                              **{f"{t}_mle": mle[t] for t in LIFETIME_TARGETS}})
        frame.to_csv(path, index=False)
        diff = np.abs(frame.tau_m_model - frame.tau_m_mle)
        return {"pixels": len(frame), "tau_m_mean_abs_diff_ns": float(diff.mean()),
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
    ax.set_title("lifetime map (blank: status not ok, see .status.npy)")
    ax.axis("off")
    save_figure(fig, path)
