"""Reading prediction inputs of the lifetime task and checking them against the model.

Images: `.sdt` (Becker & Hickl, via sdtfile), `.ptu` (PicoQuant, via ptufile: photon records histogrammed
into H x W x bins, summed over frames and channels; the laser period from the sync rate), `.npy` and
`.tif`/`.tiff` stacks (H x W x T counts). Tables: `.csv` with one row per pixel, count columns `t0..t<G-1>`
and optionally the pixel's IRF as `irf0..irf<G-1>`.

Timing: the gate width (and the laser period) come from the file when it records them (.sdt, .ptu). A stack
or table without timing metadata needs them from `--set lifetime.stack_gate_ps=...` (and
`lifetime.stack_period_ns=...`) or a sidecar JSON next to the file (`<file>.json`: {"gate_ps": 97.7,
"period_ns": 25.0}); otherwise it is refused -- a guessed gate width silently scales every lifetime. The
laser period defaults to the window (gates x width) when nothing records it; the family model refuses a period
or a window / period outside its family (`check_window`: also how a time-first stack read as H x W x T shows;
`lifetime.stack_axes=THW` reads those). A fixed-setting model (fli-net,
mfli-net presets) takes only its own number of gates and gate width (within 1 %); the family model takes any
setting inside the family it was trained on.

IRF: real files carry no per-pixel IRF. It is estimated from the data (documented approximation): the
positive part of the gate-to-gate increase of the image-summed decay over its rising edge (a decay
convolved with the IRF rises like the IRF's cumulative distribution), mirrored around its peak (a symmetric
IRF is assumed), background before the rise subtracted. Every pixel gets that one IRF.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.errors import UserError
from core.readers import decoding_errors, separator_hint

IMAGE_FORMATS = (".sdt", ".ptu", ".npy", ".tif", ".tiff")
STACK_FORMATS = (".npy", ".tif", ".tiff")   # plain arrays: their axis order is the user's (lifetime.stack_axes)
log = logging.getLogger(__name__)


def read_stack(path: Path) -> tuple[np.ndarray, dict]:
    """(counts H x W x T in the file's own dtype -- a read-only memory map for `.npy`, so an image is read
    tile by tile and never whole --, {"gate_ps", "period_ns"} as the file records them, else None)."""
    suffix = path.suffix.lower()
    timing = {"gate_ps": None, "period_ns": None}
    try:
        if path.stat().st_size == 0:
            raise UserError(f"{path}: the file is empty")
        if suffix == ".sdt":
            import sdtfile
            sdt = sdtfile.SdtFile(path)
            if not sdt.data:
                raise UserError(f"{path}: no data blocks in this .sdt file")
            data, times = np.asarray(sdt.data[0]), np.asarray(sdt.times[0])
            timing["gate_ps"] = float(times[1] - times[0]) * 1e12 if len(times) > 1 else None
        elif suffix == ".ptu":
            import ptufile
            with ptufile.PtuFile(path) as ptu:
                data = np.asarray(ptu.decode_image(dtype=np.uint32))
                dims, timing["gate_ps"] = ptu.dims, float(ptu.tcspc_resolution) * 1e12
                rate = ptu.tags.get("TTResult_SyncRate")
                timing["period_ns"] = 1e9 / float(rate) if rate else None
            # sum frames and channels: T Y X C H -> Y X H
            keep = [i for i, d in enumerate(dims) if d in ("Y", "X", "H")]
            data = data.sum(axis=tuple(i for i in range(data.ndim) if i not in keep))
        elif suffix == ".npy":
            data = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            import tifffile
            data = tifffile.imread(path)
    except UserError:
        raise
    except Exception as exc:  # a corrupt file: name it, never a traceback
        raise UserError(f"{path}: cannot be read as a {suffix} lifetime stack ({type(exc).__name__}: {exc})") from None
    if data.ndim == 2:  # a single row of pixels
        data = data[None]
    if data.ndim != 3 or 0 in data.shape:
        raise UserError(f"{path}: expected an H x W x T stack of photon counts, got shape {data.shape}")
    if data.dtype.kind not in "iuf":
        raise UserError(f"{path}: photon counts must be integers (got {data.dtype} values); save the stack as "
                        "unsigned integers, e.g. numpy's uint16")
    return data, timing


MISSING = "missing_or_non_finite_count"   # status of a pixel or row with a NaN, infinite or blank count
CHECK_PIXELS = 16_384   # pixels per tile when checking or summing a stack (bounded memory, any image size)


def row_tiles(h: int, w: int, pixels: int):
    """(first row, end row) of tiles of whole rows with about `pixels` pixels each (at least one row)."""
    rows = max(1, pixels // max(w, 1))
    for r0 in range(0, h, rows):
        yield r0, min(h, r0 + rows)


def check_stack(path: Path, data: np.ndarray, missing_ok: bool = False) -> tuple[np.ndarray, int]:
    """Values checked tile by tile (see `check_values`); returns the decay summed over the usable pixels [T]
    and the number of pixels with a NaN or infinite count (`missing_ok`: masked pixels, else refused)."""
    h, w, g = data.shape
    decay, missing = np.zeros(g), 0
    for r0, r1 in row_tiles(h, w, CHECK_PIXELS):
        tile = np.asarray(data[r0:r1]).reshape(-1, g)
        check_values(path, tile.reshape(r1 - r0, w, g), first_row=r0, missing_ok=missing_ok)
        bad = missing_pixels(tile)
        missing += int(bad.sum())
        decay += tile[~bad].sum(0, dtype=np.float64)
    if missing == h * w:
        raise UserError(f"{path}: every pixel has a NaN or infinite count; nothing to predict")
    return decay, missing


def missing_pixels(counts: np.ndarray) -> np.ndarray:
    """[...] mask of histograms [..., T] with a NaN or infinite count (masked pixels, blank table cells)."""
    if counts.dtype.kind != "f":
        return np.zeros(counts.shape[:-1], bool)
    return ~np.isfinite(counts).all(-1)


def resolve_timing(path: Path, gates: int, recorded: dict, gate_ps: float | None, period_ns: float | None) -> dict:
    """Gate width and laser period: the file's, else the config's (stack_gate_ps / stack_period_ns), else a
    sidecar <file>.json; a missing gate width is an error (never guessed)."""
    sidecar = Path(f"{path}.json")
    side = {}
    if sidecar.exists():
        try:
            side = json.loads(sidecar.read_text(encoding="utf-8-sig"))
            assert isinstance(side, dict)
        except Exception:
            raise UserError(f"{sidecar}: not a JSON object like {{\"gate_ps\": 97.7, \"period_ns\": 25.0}}") from None
    for key, given, unit in (("gate_ps", gate_ps, "ps"), ("period_ns", period_ns, "ns")):
        if recorded.get(key) and given and abs(float(given) - recorded[key]) > 0.01 * recorded[key]:
            log.warning("%s: the file records %s = %.4g %s; --set lifetime.stack_%s=%s is for stacks without timing "
                        "and is ignored", path, key, recorded[key], unit, key, given)
    gate = recorded.get("gate_ps") or gate_ps or side.get("gate_ps")
    if not gate:
        raise UserError(f"{path}: this file records no gate width; give it with --set lifetime.stack_gate_ps=<ps> "
                        f"(and --set lifetime.stack_period_ns=<laser period, ns>) or in a sidecar {sidecar.name} "
                        "containing {\"gate_ps\": 97.7, \"period_ns\": 25.0}")
    sources = (("the file", recorded.get("period_ns")), ("lifetime.stack_period_ns", period_ns),
               (sidecar.name, side.get("period_ns")))
    source, period = next(((k, v) for k, v in sources if v), (None, None))
    try:
        gate = float(gate)
        period = float(period) if period else gates * gate / 1000
        assert gate > 0 and period > 0
    except Exception:
        raise UserError(f"{path}: gate width {gate!r} ps / laser period {period!r} ns must be positive numbers"
                        ) from None
    return {"gate_ps": gate, "period_ns": period, "period_from": source}


def _thw_hint(first_axis: int) -> str:
    return (f"; read with the first axis as time ({first_axis} gates) it would fit: for a T x H x W stack add "
            "--set lifetime.stack_axes=THW")


def check_window(path: Path, shape: tuple[int, ...], timing: Mapping[str, Any], meta: Mapping[str, Any],
                 axes_settable: bool = False) -> None:
    """The family model knows laser periods and windows (gates x width / period) of its family only: outside
    them it would answer confidently and wrongly. A period or window far off is also what a time-first stack
    (T x H x W, as gated cameras write it) looks like when read as H x W x T: where the first axis as time
    would fit (`axes_settable`: a .npy/.tif stack), the message says to set lifetime.stack_axes=THW."""
    fam = meta.get("family")
    if not fam or "period_ns" not in fam:
        return
    gates, gate_ps, period = shape[-1], timing["gate_ps"], timing["period_ns"]
    lo, hi = fam["period_ns"]
    wlo, whi = fam["window_fraction"]
    known = timing.get("period_from")

    def fits(n: int) -> bool:
        window = n * gate_ps / 1000
        p = period if known else window        # an unknown period is assumed to be the window
        return 0.9 * lo <= p <= 1.1 * hi and 0.9 * wlo <= window / p <= 1.1 * whi

    hint = ""
    if axes_settable and len(shape) == 3 and shape[0] != gates and fits(shape[0]):
        hint = _thw_hint(shape[0])
    named = known or f"assumed = the window, {gates} gates x {gate_ps:.4g} ps"
    if not 0.9 * lo <= period <= 1.1 * hi:
        raise UserError(f"{path}: laser period {period:.4g} ns ({named}) is outside the {lo:g}-{hi:g} ns the model "
                        "was trained over; give the right one with --set lifetime.stack_period_ns=<ns>, or train a "
                        f"model whose lifetime.instruments.period_ns covers it{hint}")
    fraction = gates * gate_ps / 1000 / period
    if not 0.9 * wlo <= fraction <= 1.1 * whi:
        raise UserError(f"{path}: {gates} gates x {gate_ps:.4g} ps = a {gates * gate_ps / 1000:.4g} ns window, "
                        f"{fraction:.2f} of the {period:.4g} ns laser period; the model was trained on windows of "
                        f"{wlo:g}-{whi:g} periods{hint}")


def read_table(path: Path) -> tuple[np.ndarray, np.ndarray | None, pd.DataFrame]:
    """(counts [n, G], IRF [n, G] or None, the table with every column as text: written back unchanged)."""
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty; it needs a header (t0..t<G-1>) and one row per pixel")
    with decoding_errors(path, "table"):
        table = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False, encoding="utf-8")
    counts_cols = [c for c in table.columns if str(c).startswith("t") and str(c)[1:].isdigit()]
    irf_cols = [c for c in table.columns if str(c).startswith("irf") and str(c)[3:].isdigit()]
    gates = len(counts_cols)
    want = [f"t{i}" for i in range(gates)]
    if not gates or counts_cols != want:
        raise UserError(f"{path}: count columns must be t0..t<G-1> in order (found {len(counts_cols)} t-columns)"
                        f"{separator_hint(table.columns)}")
    if irf_cols and irf_cols != [f"irf{i}" for i in range(gates)]:
        raise UserError(f"{path}: {len(irf_cols)} IRF columns but {gates} count columns; give irf0..irf{gates - 1}"
                        " or none (the IRF is then estimated from the data)")
    counts = table[want].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    irf = None
    if irf_cols:
        irf = table[[f"irf{i}" for i in range(gates)]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    return counts, irf, table


def check_gates(path: Path, n: int, gate_ps: float | None, meta: Mapping[str, Any],
                stack_shape: tuple[int, ...] | None = None) -> None:
    """A fixed-setting model needs its own gates and gate width; the family model any setting in its family.
    `stack_shape`: a .npy/.tif stack's, to point at lifetime.stack_axes=THW when its first axis would fit."""
    if meta.get("gates") is not None:
        if n != meta["gates"]:
            raise UserError(f"{path}: histograms have {n} time gates but the model was trained on {meta['gates']} "
                            "gates; "
                            f"use the family model (lifetime.preset=family) or train one for this instrument "
                            f"(--set lifetime.gates={n}"
                            + (f" --set lifetime.gate_ps={gate_ps:.4g}" if gate_ps else "") + ")")
        if gate_ps and abs(gate_ps - meta["gate_ps"]) > 0.01 * meta["gate_ps"]:
            raise UserError(f"{path}: gate width {gate_ps:.4g} ps but the model was trained on "
                            f"{meta['gate_ps']:.4g} ps; use the family model or train one for this instrument "
                            f"(--set lifetime.gate_ps={gate_ps:.4g})")
        return
    fam = meta["family"]
    lo, hi = fam["gate_ps"]
    if gate_ps and not (0.9 * lo <= gate_ps <= 1.1 * hi):
        raise UserError(f"{path}: gate width {gate_ps:.4g} ps is outside the {lo:g}-{hi:g} ps the model was trained "
                        f"over; train one whose lifetime.instruments.gate_ps covers it")
    if not (fam["gates"][0] // 2 <= n <= 2 * fam["gates"][1]):
        first = stack_shape[0] if stack_shape is not None and len(stack_shape) == 3 else None
        hint = _thw_hint(first) if first and fam["gates"][0] <= first <= fam["gates"][1] else ""
        raise UserError(f"{path}: {n} time gates is far outside the {fam['gates'][0]}-{fam['gates'][1]} the model was "
                        "trained over; rebin the histograms or train a model whose lifetime.instruments.gates "
                        f"covers it{hint}")


def check_values(path: Path, counts: np.ndarray, first_row: int = 0, missing_ok: bool = False) -> None:
    """Negative and fractional counts are refused with the first offending pixel (or row) named: they are not
    photon counts (a processed image: every pixel is suspect). NaN or infinite counts too, unless `missing_ok`
    (--on-invalid mark/skip): those pixels or rows are masked ones, predicted with a status instead.
    `first_row`: where `counts` starts in the image (a tile) or the table."""
    if counts.dtype.kind not in "iuf":
        raise UserError(f"{path}: photon counts must be integers (got {counts.dtype} values)")
    if counts.dtype.kind == "f":
        bad = ~np.isfinite(counts)
        if bad.any() and not missing_ok:
            where = _index(bad, first_row)
            raise UserError(f"{path}: NaN or infinite count at {_where(where, counts.ndim)}; photon counts must be "
                            "finite (masked pixels or blank cells? --on-invalid mark predicts the others and gives "
                            f"these the status {MISSING})")
        counts = np.where(bad, 0.0, counts)
    neg = counts < 0
    if neg.any():
        where = _index(neg, first_row)
        raise UserError(f"{path}: negative count {counts[_index(neg, 0)]:g} at {_where(where, counts.ndim)}; photon "
                        "counts must be >= 0 (was a background subtracted? give raw counts)")
    if counts.dtype.kind == "f":
        frac = counts != np.round(counts)
        if frac.any():
            where = _index(frac, first_row)
            raise UserError(f"{path}: fractional count {counts[_index(frac, 0)]:g} at {_where(where, counts.ndim)}; "
                            "photon counts are whole numbers (give raw counts, not normalized or corrected ones)")


def _where(index: tuple, ndim: int) -> str:
    if ndim == 3:
        return f"pixel (row {index[0]}, column {index[1]}), gate {index[2]}"
    return f"data row {index[0] + 1}, gate {index[1]}"


def _index(mask: np.ndarray, first_row: int) -> tuple:
    where = np.unravel_index(int(np.argmax(mask)), mask.shape)
    return (int(where[0]) + first_row, *map(int, where[1:]))


def estimate_irf(counts: np.ndarray, path: Path | None = None) -> np.ndarray:
    """One IRF [G] from the summed decay of all pixels (see the module docstring)."""
    return irf_from_decay(np.asarray(counts, float).reshape(-1, counts.shape[-1]).sum(0), path)


def irf_from_decay(decay: np.ndarray, path: Path | None = None) -> np.ndarray:
    peak = int(np.argmax(decay))
    if peak < 2 or decay[peak] <= 0:
        what = "every count is zero" if decay[peak] <= 0 else "the summed decay peaks in the first two gates"
        raise UserError(f"{path or 'input'}: cannot estimate the IRF: {what}; give photon counts of a measured "
                        "decay (for a table, the IRF can also be given as columns irf0..)")
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


def irf_peak(irf: np.ndarray) -> int:
    return int(np.round(np.median(np.argmax(irf.reshape(-1, irf.shape[-1]), axis=-1))))


def align(counts: np.ndarray, irf: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Shift histograms and IRFs (same shift for all) so the IRF peaks at gate `target`, where the training
    IRFs peak; gates shifted out are dropped, gates shifted in are zero. Returns the shift applied."""
    shift = target - irf_peak(irf)
    return shift_gates(counts, shift), shift_gates(irf, shift), shift


def shift_gates(x: np.ndarray, shift: int) -> np.ndarray:
    if shift == 0:
        return x
    out = np.zeros_like(x)
    if shift > 0:
        out[..., shift:] = x[..., :-shift]
    else:
        out[..., :shift] = x[..., -shift:]
    return out


def bin_image(counts: np.ndarray, radius: int) -> np.ndarray:
    """Sum each pixel's histogram with its (2r+1)^2 neighbourhood (edges use the pixels that exist)."""
    if radius <= 0:
        return counts
    h, w, _ = counts.shape
    csum = np.pad(counts, ((1, 0), (1, 0), (0, 0))).cumsum(0).cumsum(1)
    r0, r1 = np.clip(np.arange(h) - radius, 0, h), np.clip(np.arange(h) + radius + 1, 0, h)
    c0, c1 = np.clip(np.arange(w) - radius, 0, w), np.clip(np.arange(w) + radius + 1, 0, w)
    return (csum[r1][:, c1] - csum[r0][:, c1] - csum[r1][:, c0] + csum[r0][:, c0])


def target_peak(meta: Mapping[str, Any], peak: int, gate_ns: float) -> int:
    """The gate the IRF should peak at: a fixed-setting model's training position; for the family model the
    current one when it lies inside the trained range of IRF positions, else the nearest end of that range."""
    prior = meta["prior"]
    if meta.get("family") is None:
        return int((prior["irf_center_ns"] + prior["irf_jitter_ns"] / 2) / gate_ns)
    lo, hi = meta["family"]["irf_center_ns"]
    return int(np.clip((peak + 0.5) * gate_ns, lo, hi) / gate_ns)
