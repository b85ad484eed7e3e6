"""The lifetime task: simulate -> train -> evaluate (model vs classical fits on the same pixels)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.config import Config
from core.domain import LoadedModel, TrainingTask
from core.errors import UserError
from core.io import atomic_path, file_sha256
from core.metrics import machine_label
from domains.spectra import fit
from domains.spectra.flim import IRF_SPAN_NS, FlimSetting, setting_from_config, simulate
from domains.spectra.model import (LIFETIME_TARGETS, LifetimeCollate, l1_loss, lifetime_model, log_bin_edges,
                                   run_lifetime, target_ranges)

# test sets: (file stem, dataset name in the metric rows, config count key, changes to the setting)
TEST_SETS = (("test", "sim-100-1000", "n_test", {}),
             ("test_high", "sim-1k-10k", "n_test_high", {"photons": (1000.0, 10000.0)}),
             ("test_ood", "sim-ood-irf", "n_test_ood", {"irf_shapes": ("gamma_wide",)}))
SEED_OFFSETS = {"train": 0, "val": 1, "test": 2, "test_high": 3, "test_ood": 4}


def setting_of(cfg: Config) -> FlimSetting:
    return setting_from_config(cfg.to_dict()["lifetime"])


def setting_from_meta(meta: Mapping[str, Any]) -> FlimSetting:
    return FlimSetting(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["setting"].items()})


def prepare(cfg: Config, out_dir: Path) -> dict[str, str]:
    setting = setting_of(cfg)
    n_bins = int(cfg["lifetime.bins"]) or setting.gates
    if n_bins % int(cfg["lifetime.patch"]):
        raise UserError(f"lifetime.patch={cfg['lifetime.patch']} does not divide the {n_bins} "
                        f"{'bins' if cfg['lifetime.bins'] else 'gates'}; choose a divisor (e.g. 8 for 32 bins)")
    seed = int(cfg["seed"]) * 1000
    sizes = {"train": cfg["lifetime.n_train"], "val": cfg["lifetime.n_val"],
             **{stem: cfg[f"lifetime.{key}"] for stem, _, key, _ in TEST_SETS}}
    changes = {stem: ch for stem, _, _, ch in TEST_SETS}
    if cfg.get("lifetime.train_photons"):   # train on a wider photon range; the test sets keep theirs
        changes["train"] = changes["val"] = {"photons": tuple(float(v) for v in cfg["lifetime.train_photons"])}
    hashes = {}
    for stem, n in sizes.items():
        if not n:
            continue
        s = FlimSetting(**{**setting.__dict__, **changes.get(stem, {})})
        data = simulate(s, int(n), seed + SEED_OFFSETS[stem])
        data["counts"] = data["counts"].astype(np.uint16 if data["counts"].max() < 65535 else np.int32)
        with atomic_path(out_dir / f"{stem}.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **data)
        hashes[f"{stem}.npz"] = file_sha256(out_dir / f"{stem}.npz")  # simulated: hash the outputs
    return hashes


def load(prepared: Path, stem: str) -> dict[str, np.ndarray]:
    path = Path(prepared) / f"{stem}.npz"
    if not path.exists():
        raise UserError(f"{prepared}: no {stem}.npz; run `sciformer prepare -d spectra --set task=lifetime "
                        f"-o {prepared}` first (or this prepared dir is of the nir task)")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def scaled_targets(data: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
    rng = target_ranges(meta)
    y = np.stack([data[t] for t in LIFETIME_TARGETS], 1)
    return ((y - rng[:, 0]) / (rng[:, 1] - rng[:, 0])).astype(np.float32)


def metadata(cfg: Config) -> dict[str, Any]:
    setting = setting_of(cfg)
    meta = {"kind": "lifetime", "setting": {k: list(v) if isinstance(v, tuple) else v
                                            for k, v in setting.__dict__.items()},
            "gates": setting.gates, "gate_ps": setting.gate_ps, "tau1": list(setting.tau1),
            "tau2": list(setting.tau2), "patch": int(cfg["lifetime.patch"]), "encoder": dict(cfg["encoder"]),
            "hidden": int(cfg["head.hidden"]), "dropout": float(cfg["head.dropout"]),
            "min_photons": float(cfg["lifetime.min_photons"]), "predict_bin": int(cfg["lifetime.predict_bin"]),
            "compare_pixels": int(cfg["lifetime.compare_pixels"]),
            "irf_center_gates": setting.irf_center_gates,
            # the IRF's support: the simulator draws IRFs only up to IRF_SPAN_NS after the latest peak
            "irf_gates": min(setting.gates, int(np.ceil(setting.irf_center_gates + setting.irf_jitter_gates
                                                        + IRF_SPAN_NS / setting.gate_ns)) + 1)}
    if cfg["lifetime.bins"]:   # log-spaced bins (stored: prediction rebuilds the same projection); 0 = gates
        try:
            meta["bin_edges"] = log_bin_edges(setting.gates, setting.irf_center_gates, int(cfg["lifetime.bins"]))
        except ValueError as err:
            raise UserError(str(err)) from None
    return meta


def build_task(cfg: Config, prepared: Path) -> TrainingTask:
    meta = metadata(cfg)
    train, val = load(prepared, "train"), load(prepared, "val")
    if train["counts"].shape[1] != meta["gates"]:
        raise UserError(f"{prepared}: prepared histograms have {train['counts'].shape[1]} gates but the config "
                        f"says {meta['gates']}; prepare again with the same lifetime settings")
    model = lifetime_model(meta)
    collate_train = LifetimeCollate(train["counts"], train["irf"], scaled_targets(train, meta))
    collate_val = LifetimeCollate(val["counts"], val["irf"], scaled_targets(val, meta))
    # the trainer feeds lists of indices; val indices are offset so one collate can serve both sets
    both = _TwoSetCollate(collate_train, collate_val, len(train["counts"]))
    n_train = len(train["counts"])
    return TrainingTask(model, range(n_train), range(n_train, n_train + len(val["counts"])), both, l1_loss, meta,
                        val_metric="val_l1")


class _TwoSetCollate:
    def __init__(self, first: LifetimeCollate, second: LifetimeCollate, offset: int):
        self.first, self.second, self.offset = first, second, offset

    def __call__(self, idx: list[int]) -> dict[str, Any]:
        if idx and idx[0] >= self.offset:
            return self.second([i - self.offset for i in idx])
        return self.first(idx)


def predict_arrays(members: list[LoadedModel], counts: np.ndarray, irf: np.ndarray) -> dict[str, np.ndarray]:
    """Model estimates in physical units (ns; A in [0, 1]), mean over ensemble members."""
    meta = members[0].metadata["task"]
    mean = run_lifetime(members, counts, irf)
    rng = target_ranges(meta)
    values = rng[:, 0] + np.clip(mean, 0, 1) * (rng[:, 1] - rng[:, 0])
    return {t: values[:, k] for k, t in enumerate(LIFETIME_TARGETS)}


def _timed(fn, *args) -> tuple[dict[str, np.ndarray], float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def model_speed(members: list[LoadedModel], data: Mapping[str, np.ndarray], min_pixels: int = 65536,
                repeats: int = 3) -> float:
    """Pixels per second of the whole prediction path (uint16 counts -> float, featurization, model), the
    median of `repeats` timings after a warm-up (on a shared machine one timing can catch another job)."""
    reps = max(1, -(-min_pixels // len(data["counts"])))
    counts, irf = np.tile(data["counts"], (reps, 1)), np.tile(data["irf"], (reps, 1))
    predict_arrays(members, counts[:8192], irf[:8192])
    return float(np.median([len(counts) / _timed(predict_arrays, members, counts, irf)[1] for _ in range(repeats)]))


def _mle_interleaved(members: list[LoadedModel], sub: Mapping[str, np.ndarray], setting: FlimSetting,
                     chunks: int = 5, min_pixels: int = 65536) -> tuple[dict[str, np.ndarray], float, float]:
    """Poisson MLE on all pixels in `chunks` parts with the model's prediction path timed between them:
    (MLE estimates, MLE pixels/s, model pixels/s). On a shared machine the load changes over the seconds the
    MLE takes; interleaving samples both speeds under the same load, so their ratio is not a load artefact."""
    reps = max(1, -(-min_pixels // len(sub["counts"])))
    counts, irf = np.tile(sub["counts"], (reps, 1)), np.tile(sub["irf"], (reps, 1))
    predict_arrays(members, counts[:8192], irf[:8192])   # warm-up
    parts, mle_s, model_s = [], 0.0, 0.0
    chunks = max(1, min(chunks, len(sub["counts"])))
    for idx in np.array_split(np.arange(len(sub["counts"])), chunks):
        out, seconds = _timed(fit.mle, sub["counts"][idx], sub["irf"][idx], setting)
        parts.append(out)
        mle_s += seconds
        model_s += _timed(predict_arrays, members, counts, irf)[1]
    est = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return est, len(sub["counts"]) / mle_s, chunks * len(counts) / model_s


def evaluate(cfg: Config, prepared: Path, members: list[LoadedModel]) -> tuple[list[dict], pd.DataFrame]:
    meta = members[0].metadata["task"]
    setting = setting_from_meta(meta)
    method = f"sciformer-{meta['encoder']['attention']}"
    n_base = int(cfg["lifetime.baseline_pixels"])
    baselines = [b for b in cfg["lifetime.baselines"] if b != "flimlib" or fit.flimlib_available()]
    rows, frames = [], []
    for stem, dataset, key, changes in TEST_SETS:
        if not (Path(prepared) / f"{stem}.npz").exists():
            continue
        data = load(prepared, stem)
        s = FlimSetting(**{**setting.__dict__, **changes})
        n = min(len(data["counts"]), n_base) if n_base else len(data["counts"])
        sub = {k: v[:n] for k, v in data.items()}   # every method is scored on these same pixels
        preds, speed = {method: predict_arrays(members, sub["counts"], sub["irf"])}, {}
        if "mle" in baselines:   # the speed ratio: both timed over the same minutes
            preds["mle"], speed["mle"], speed[method] = _mle_interleaved(members, sub, s)
        else:
            speed[method] = model_speed(members, sub)
        for name in baselines:
            if name == "mle":
                continue
            preds[name], seconds = _timed(fit.ESTIMATORS[name], sub["counts"], sub["irf"], s)
            speed[name] = n / max(seconds, 1e-9)
        frame = pd.DataFrame({"dataset": dataset, "photons": sub["photons"], "irf_shape": sub["shape"],
                              **{t: sub[t] for t in LIFETIME_TARGETS}})
        for name, p in preds.items():
            for t in LIFETIME_TARGETS:
                err = float(np.mean(np.abs(p[t] - sub[t])))
                rows.append(_row(dataset, name, f"{t}_mae", err))
                frame[f"{t}_pred_{name}"] = p[t]
            rows.append(_row(dataset, name, "pixels_per_s", speed[name]))
            if "mle" in speed:
                rows.append(_row(dataset, name, "speedup_vs_mle", speed[name] / speed["mle"]))
        frames.append(frame)
    if not frames:
        raise UserError(f"{prepared}: no test sets; prepare with lifetime.n_test > 0")
    return rows, pd.concat(frames, ignore_index=True)


def _row(dataset: str, method: str, metric: str, value: float) -> dict:
    return {"task": "lifetime", "dataset": dataset, "split": "test", "method": method, "metric": metric,
            "value": float(value), "machine": machine_label()}
