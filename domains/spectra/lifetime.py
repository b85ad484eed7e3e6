"""The lifetime task: simulate -> train (fresh simulated batches) -> evaluate (model vs fitters, same pixels)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.config import Config
from core.domain import LoadedModel, TrainingTask
from core.errors import UserError
from core.io import file_sha256
from domains.spectra.features import bin_edges
from domains.spectra.flim import FlimSetting, InstrumentFamily, simulate
from domains.spectra.lifetime_data import (
    SEED_OFFSETS,
    TEST_SETS,
    GroupCollate,
    SimulatedCollate,
    base_setting,
    family_of,
    load_groups,
    save_groups,
    simulate_set,
    test_setting,
)
from domains.spectra.model import LIFETIME_TARGETS, l1_loss, lifetime_model, run_lifetime, to_physical

VAL_GROUP = 256        # validation pixels per acquisition setting (family preset)


def section(cfg: Config) -> dict:
    return cfg.to_dict()["lifetime"]


def prior_of(meta: Mapping[str, Any]) -> FlimSetting:
    """The training setting (prior, IRF family, the default acquisition setting) stored with a model."""
    return FlimSetting.from_dict(meta["prior"])


def family_from_meta(meta: Mapping[str, Any]) -> InstrumentFamily | None:
    fam = meta.get("family")
    return InstrumentFamily(**{k: tuple(v) for k, v in fam.items()}) if fam else None


def prepare(cfg: Config, out_dir: Path) -> dict[str, str]:
    sec = section(cfg)
    n_bins = int(sec["bins"])
    if n_bins % int(sec["patch"]):
        raise UserError(f"lifetime.patch={sec['patch']} does not divide lifetime.bins={n_bins}; choose a divisor")
    base, fam = base_setting(sec), family_of(sec)
    seed = int(cfg["seed"]) * 1000
    out_dir = Path(out_dir)
    n_val = int(sec["n_val"])
    sizes = [n_val] if fam is None else [len(c) for c in np.array_split(np.arange(n_val), max(1, n_val // VAL_GROUP))]
    rng = np.random.default_rng([seed, SEED_OFFSETS["val"]])
    groups = []
    for g, n in enumerate(sizes):
        s = base if fam is None else base.with_(**fam.draw(rng))
        groups.append((s, simulate(s, n, [seed, SEED_OFFSETS["val"], g])))
    save_groups(out_dir / "val.npz", groups)
    hashes = {"val.npz": file_sha256(out_dir / "val.npz")}
    for name, key, instrument, changes in TEST_SETS:
        s = test_setting(base, fam is not None, sec["photons"], instrument, changes)
        if not sec[key] or s is None:
            continue
        data = simulate_set(s, int(sec[key]), seed + SEED_OFFSETS[name], bool(changes.get("estimate_irf")))
        data["counts"] = data["counts"].astype(np.uint16 if data["counts"].max() < 65535 else np.int32)
        save_groups(out_dir / f"{name}.npz", [(s, data)])
        hashes[f"{name}.npz"] = file_sha256(out_dir / f"{name}.npz")   # simulated: hash the outputs
    return hashes


def metadata(cfg: Config) -> dict[str, Any]:
    sec = section(cfg)
    base, fam = base_setting(sec), family_of(sec)
    try:
        edges = bin_edges(int(sec["bins"]))
    except ValueError as err:
        raise UserError(str(err)) from None
    return {"kind": "lifetime", "prior": base.to_dict(), "family": asdict(fam) if fam else None,
            "tau1": list(base.tau1), "tau2": list(base.tau2), "target_scale": sec["target_scale"],
            "bin_edges": edges, "patch": int(sec["patch"]),
            "encoder": dict(cfg["encoder"]), "hidden": int(cfg["head.hidden"]), "dropout": float(cfg["head.dropout"]),
            "min_photons": float(sec["min_photons"]), "predict_bin": int(sec["predict_bin"]),
            "compare_pixels": int(sec["compare_pixels"]),
            # a fixed-setting model (presets) only reads data of its own setting
            "gates": None if fam else base.gates, "gate_ps": None if fam else base.gate_ps}


def build_task(cfg: Config, prepared: Path, seed: int) -> TrainingTask:
    meta = metadata(cfg)
    sec = section(cfg)
    val = load_groups(Path(prepared) / "val.npz")
    base, fam = base_setting(sec), family_of(sec)
    if fam is None and val[0][1]["counts"].shape[1] != base.gates:
        raise UserError(f"{prepared}: prepared histograms have {val[0][1]['counts'].shape[1]} gates but the config "
                        f"says {base.gates}; prepare again with the same lifetime settings")
    val_collate = GroupCollate(meta, val)
    # each ensemble member (its own seed) draws its own training pixels
    train_collate = SimulatedCollate(meta, base, fam, seed=1000 * seed + 17)
    return TrainingTask(lifetime_model(meta), range(int(sec["n_train"])), range(len(val_collate)), train_collate,
                        l1_loss, meta, val_metric="val_l1", val_collate=val_collate)


def predict_arrays(members: list[LoadedModel], counts: np.ndarray, irf: np.ndarray,
                   setting: FlimSetting) -> dict[str, np.ndarray]:
    """Model estimates in physical units (ns; A in [0, 1]), mean over ensemble members, clipped to the prior."""
    meta = members[0].metadata["task"]
    scaled = run_lifetime(members, counts, irf, setting.gates, setting.gate_ns, setting.period_ns)
    values = to_physical(scaled, meta)
    return {t: values[:, k] for k, t in enumerate(LIFETIME_TARGETS)}


def test_sets(prepared: Path) -> list[tuple[str, FlimSetting, dict]]:
    """(dataset name, setting, data) of every test set that was prepared."""
    out = []
    for name, *_ in TEST_SETS:
        path = Path(prepared) / f"{name}.npz"
        if path.exists():
            (s, data), = load_groups(path)
            out.append((name, s, data))
    if not out:
        raise UserError(f"{prepared}: no test sets; prepare with lifetime.n_test > 0")
    return out
