"""Simulated data of the lifetime task: presets, test sets, storage, and the training/validation collates.

Training pixels are simulated on the fly, a fresh draw every batch, seeded by the batch's indices (the
trainer's shuffle is seeded, so a run is repeatable); the family preset draws an acquisition setting per
batch. Validation and test sets are simulated once by `prepare` and stored as groups of pixels that share one
acquisition setting.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from core.errors import UserError
from core.io import atomic_path
from domains.spectra.features import Featurizer, peak_time
from domains.spectra.flim import INSTRUMENTS, FlimSetting, InstrumentFamily, simulate
from domains.spectra.model import LIFETIME_TARGETS, to_scaled

# lifetime priors and IRF widths of the presets; `family` also trains over a family of acquisition settings
PRESETS = {
    "family": {"tau1": (0.1, 10.0), "tau2": (0.1, 10.0), "log_tau": True, "mono_fraction": 0.3,
               "irf_fwhm_ps": (60.0, 350.0), "instrument": "fli-net"},
    "fli-net": {"tau1": (0.2, 0.5), "tau2": (2.0, 3.0), "log_tau": False, "mono_fraction": 0.0,
                "irf_fwhm_ps": (80.0, 200.0), "instrument": "fli-net"},
    "mfli-net": {"tau1": (0.2, 0.8), "tau2": (0.8, 1.5), "log_tau": False, "mono_fraction": 0.0,
                 "irf_fwhm_ps": (80.0, 200.0), "instrument": "mfli-net"},
}
IRF_CENTER_NS = 1.0          # test and preset settings: the IRF peaks ~1 ns into the window (FLI-Net: 20 gates)
OOD_BLOCK = 64               # out-of-distribution IRF set: pixels sharing one IRF, estimated from their sum
# test sets: (dataset name, config count key, named instrument (None: the model's own), changes to the setting)
TEST_SETS = (
    ("sim-100-1000", "n_test", None, {}),
    ("sim-ptu", "n_test", "ptu", {}),
    ("sim-image-40mhz", "n_test", "image-40mhz", {}),
    ("sim-1k-10k", "n_test_high", None, {"photons": (1e3, 1e4)}),        # inside the training photon range
    ("sim-10k-100k", "n_test_high", None, {"photons": (1e4, 1e5)}),      # held out: more photons than trained
    ("sim-prior-shift", "n_test_ood", "image-40mhz", {"prior_shift": True}),
    ("sim-ood-irf", "n_test_ood", None, {"irf_shapes": ("gamma_wide",), "irf_jitter_ns": 0.6, "background": 0.1,
                                         "estimate_irf": True}),
)
SEED_OFFSETS = {"val": 1, **{name: 2 + k for k, (name, *_) in enumerate(TEST_SETS)}}


def base_setting(section: Mapping[str, Any]) -> FlimSetting:
    """The training setting from the config's `lifetime` section (the family preset's instrument fields are
    only the default for evaluation; training draws them per batch)."""
    preset = PRESETS[section["preset"]]
    gates, gate_ps, period = INSTRUMENTS[preset["instrument"]]
    pick = lambda key, default: default if section.get(key) is None else section[key]   # noqa: E731
    return FlimSetting(
        gates=int(pick("gates", gates)), gate_ps=float(pick("gate_ps", gate_ps)),
        period_ns=float(pick("period_ns", period)), irf_center_ns=IRF_CENTER_NS,
        irf_jitter_ns=float(section["irf_jitter_ns"]), irf_fwhm_ps=tuple(pick("irf_fwhm_ps", preset["irf_fwhm_ps"])),
        irf_shapes=tuple(section["irf_shapes"]), tau1=tuple(pick("tau1", preset["tau1"])),
        tau2=tuple(pick("tau2", preset["tau2"])), log_tau=preset["log_tau"],
        mono_fraction=float(pick("mono_fraction", preset["mono_fraction"])),
        photons=tuple(section.get("train_photons") or section["photons"]), background=float(section["background"]))


def family_of(section: Mapping[str, Any]) -> InstrumentFamily | None:
    if section["preset"] != "family":
        return None
    return InstrumentFamily(**{k: tuple(v) for k, v in section["instruments"].items()})


def test_setting(base: FlimSetting, family: bool, photons, instrument: str | None,
                 changes: Mapping) -> FlimSetting | None:
    """The setting of one test set, or None when it does not apply (another instrument for a fixed-setting
    model)."""
    s = base.with_(photons=tuple(photons))
    if instrument is not None:
        if not family:
            return None
        gates, gate_ps, period = INSTRUMENTS[instrument]
        s = s.with_(gates=gates, gate_ps=gate_ps, period_ns=period)
    changes = dict(changes)
    changes.pop("estimate_irf", None)
    if changes.pop("prior_shift", False):   # ranges widened 2x on each side, U-shaped A, more mono pixels
        changes.update(tau1=(s.tau1[0] / 2, s.tau1[1] * 2), tau2=(s.tau2[0] / 2, s.tau2[1] * 2), a_beta=(0.5, 0.5),
                       mono_fraction=max(0.5, s.mono_fraction), log_tau=True)
    return s.with_(**changes)


def simulate_set(s: FlimSetting, n: int, seed: int, estimate_irf: bool = False) -> dict[str, np.ndarray]:
    if not estimate_irf:
        return simulate(s, n, seed)
    from domains.spectra.readers import estimate_irf
    blocks = -(-n // OOD_BLOCK)
    one = simulate(s, blocks, seed)                      # one IRF per block
    parts = [{**simulate(s, OOD_BLOCK, [seed, b], irf=one["irf"][b]), "shape": np.full(OOD_BLOCK, one["shape"][b])}
             for b in range(blocks)]
    data = {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}
    data["irf_true"] = data["irf"]
    est = [np.broadcast_to(estimate_irf(p["counts"][None].astype(float)), p["irf"].shape) for p in parts]
    data["irf"] = np.concatenate(est)[:n].astype(np.float32)
    return data


def save_groups(path: Path, groups: list[tuple[FlimSetting, dict]]) -> None:
    arrays = {f"g{k}_{name}": v for k, (_, d) in enumerate(groups) for name, v in d.items()}
    arrays["settings"] = np.array(json.dumps([s.to_dict() for s, _ in groups]))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_groups(path: Path) -> list[tuple[FlimSetting, dict[str, np.ndarray]]]:
    if not Path(path).exists():
        raise UserError(f"{Path(path).parent}: no {Path(path).name}; run `sciformer prepare -d spectra --set "
                        f"task=lifetime -o {Path(path).parent}` first (or this prepared dir is of the nir task)")
    with np.load(path) as z:
        settings = [FlimSetting.from_dict(d) for d in json.loads(str(z["settings"]))]
        return [(s, {k.split("_", 1)[1]: z[k] for k in z.files if k.startswith(f"g{i}_")})
                for i, s in enumerate(settings)]


def targets(data: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.stack([data[t] for t in LIFETIME_TARGETS], 1)


def featurize(meta: Mapping, s: FlimSetting, counts, irf) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.from_numpy(np.asarray(counts, dtype=np.float32))
    i = torch.from_numpy(np.ascontiguousarray(irf, dtype=np.float32))
    return Featurizer(meta, s.gates, s.gate_ns, s.period_ns, peak_time(i, s.gate_ns))(c, i)


class SimulatedCollate:
    """Indices -> a freshly simulated batch (seeded by the indices); family: one acquisition setting per batch."""

    def __init__(self, meta: Mapping, base: FlimSetting, family: InstrumentFamily | None, seed: int):
        self.meta, self.base, self.family, self.seed = meta, base, family, seed

    def __call__(self, idx: list[int]) -> dict[str, Any]:
        entropy = [self.seed, *map(int, idx)]
        s = self.base
        if self.family is not None:
            s = s.with_(**self.family.draw(np.random.default_rng(entropy)))
        data = simulate(s, len(idx), [*entropy, 1])
        tokens, scalars = featurize(self.meta, s, data["counts"], data["irf"])
        return {"tokens": tokens, "scalars": scalars, "y": torch.from_numpy(to_scaled(targets(data), self.meta)),
                "size": len(idx)}


class GroupCollate:
    """Indices into stored groups (validation) -> one batch; each group is featurized with its own setting."""

    def __init__(self, meta: Mapping, groups: list[tuple[FlimSetting, dict]], offset: int = 0):
        self.meta, self.groups, self.offset = meta, groups, offset
        self.starts = np.cumsum([0, *(len(d["counts"]) for _, d in groups)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __call__(self, idx: list[int]) -> dict[str, Any]:
        idx = np.asarray(idx) - self.offset
        which = np.searchsorted(self.starts, idx, side="right") - 1
        tok, sca, ys = [], [], []
        for g in np.unique(which):
            s, d = self.groups[g]
            rows = idx[which == g] - self.starts[g]
            t, c = featurize(self.meta, s, d["counts"][rows], d["irf"][rows])
            tok.append(t), sca.append(c), ys.append(to_scaled(targets(d)[rows], self.meta))
        return {"tokens": torch.cat(tok), "scalars": torch.cat(sca), "y": torch.from_numpy(np.concatenate(ys)),
                "size": len(idx)}
