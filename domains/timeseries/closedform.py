"""The closed-form forecaster the model starts from, which is also the closed-form baselines' family.

A closed form is
- a per-channel calendar cycle (the training rows' per-phase means, CycleNet's idea) taken off the series;
- a ridge map lookback -> horizon shared by every channel (DLinear's function class), reading either the
  train-standardized window (`global`) or the window normalized by its own mean and spread (`window`,
  NLinear/RevIN style, restored at the output);
- optionally (`exo`) a per-channel linear term, with a per-channel intercept, in the known-future covariates
  and calendar features over lookback + horizon: the values the model's exogenous tokens read.

Selection rule, fixed before any test number was seen (test windows are never read here): every combination of
cycle in {none} + the feasible ones of {day, week, year} (`data.cycle_keys`), input scale in {global, window},
covariates in {without, with} (with: only when the data have covariates or calendar features) and penalty in
`forecast.ridge_alphas` is fitted on the training windows and scored by its MSE over every validation window
(observed targets; inputs as the model sees them). The lowest validation MSE wins. `forecast.period`,
`forecast.linear_norm` and `forecast.linear_exo` pin one dimension instead of searching it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from core.errors import UserError
from domains.timeseries import data as D

NORMS = ("global", "window")
EPS = 1e-5   # added to the window variance (as RevIN and the model do)


@dataclass(frozen=True)
class Spec:
    cycle: str = "none"     # none | day | week | year
    norm: str = "global"    # global | window
    exo: bool = False

    def label(self) -> str:
        return f"cycle={self.cycle},norm={self.norm},exo={'yes' if self.exo else 'no'}"


def fit_cycle(p, cycle: str) -> tuple[np.ndarray | None, np.ndarray, list | None]:
    """(cycle values [phases + 1, C], phase of every row, training phase keys); the extra last row is the
    zero cycle of phases never seen in training."""
    if cycle == "none":
        return None, np.zeros(len(p.time), dtype=np.int64), None
    train_end = p.borders[0][1]
    keys = D.cycle_keys(p.time[:train_end], cycle)
    if keys is None:
        raise UserError(f"forecast.period={cycle}: the training rows do not hold every phase of a {cycle} twice; "
                        "use forecast.period=auto or a shorter cycle")
    phase = D.phases(p.time, cycle, keys)
    values = np.zeros((len(keys) + 1, p.z.shape[1]))
    train_phase, train_z = phase[:train_end], p.z[:train_end]
    for k in range(len(keys)):
        rows = train_z[train_phase == k]
        observed = ~np.isnan(rows)
        values[k] = np.where(observed.any(0), np.nansum(rows, 0) / np.maximum(observed.sum(0), 1), 0.0)
    return values, phase, keys


def exo_windows(p, starts: np.ndarray, lookback: int, horizon: int) -> np.ndarray:
    """Exogenous values over lookback + horizon, flattened time-major as the model flattens them, and a
    column of ones (the per-channel intercept): [W, (L+H)*E + 1]."""
    z = p.exo[starts[:, None] + np.arange(lookback + horizon)[None]].reshape(len(starts), -1)
    return np.concatenate([z, np.ones((len(starts), 1))], 1)


class Design:
    """The windows of one split as a closed form reads them, channel-major: inputs x [W, C, L] and targets
    y [W, C, H] minus the cycle, normalized per window if asked, and which (window, channel) pairs are
    complete (every lookback and target value observed)."""

    def __init__(self, p, starts: np.ndarray, lookback: int, horizon: int, cyc, phase, norm: str):
        idx = starts[:, None] + np.arange(lookback + horizon)[None]
        x = p.z_in[idx[:, :lookback]].transpose(0, 2, 1)
        y = p.z[idx[:, lookback:]].transpose(0, 2, 1)
        self.cycle_out = 0.0
        if cyc is not None:
            shift = cyc[phase[idx]].transpose(0, 2, 1)                     # [W, C, L+H]
            x = x - shift[:, :, :lookback]
            self.cycle_out = shift[:, :, lookback:]
        missing = np.concatenate([np.zeros((1, p.z.shape[1])), np.cumsum(np.isnan(p.z), 0)])
        self.complete = missing[starts + lookback + horizon] == missing[starts]   # [W, C]
        if norm == "window":
            self.mu = x.mean(2, keepdims=True)
            self.sd = np.sqrt(x.var(2, keepdims=True) + EPS)
            x = (x - self.mu) / self.sd
        else:
            self.mu, self.sd = 0.0, 1.0
        self.x = x
        self.y = (y - self.cycle_out - self.mu) / self.sd                  # NaN where missing

    def to_data_units(self, out: np.ndarray) -> np.ndarray:
        """[W, C, H] on the design's scale -> [W, H, C] on the train-standardized scale."""
        return (out * self.sd + self.mu + self.cycle_out).transpose(0, 2, 1)


class NormalEquations:
    """Sufficient statistics of the training design for every penalty at once. Without covariates: one map
    and a shared intercept (centered least squares). With them: the shared map plus a per-channel block
    [features, 1] (`z`: exo_windows), solved by eliminating the channel blocks (their Gram matrices are small
    and independent)."""

    def __init__(self, design: Design, z: np.ndarray | None = None, zz_cache: dict | None = None):
        channels = design.x.shape[1]
        self.exo = z is not None
        self.lookback = design.x.shape[2]
        keeps = [design.complete[:, c] for c in range(channels)]
        xs = [design.x[k, c] for c, k in enumerate(keeps)]
        ys = [design.y[k, c] for c, k in enumerate(keeps)]
        self.n = sum(len(x) for x in xs)
        if self.n < 2:
            raise UserError("too few complete training windows (without missing values) to fit the closed-form "
                            "forecaster; fill the gaps or use a shorter forecast.lookback/horizon")
        self.xx = sum(x.T @ x for x in xs)
        self.xy = sum(x.T @ y for x, y in zip(xs, ys))
        if not self.exo:
            self.sx, self.sy = sum(x.sum(0) for x in xs), sum(y.sum(0) for y in ys)
            return
        cache = {} if zz_cache is None else zz_cache
        self.blocks = []
        for c, keep in enumerate(keeps):
            zc = z if keep.all() else z[keep]
            zz = cache.get(keep.tobytes())   # the same for every cycle and input scale: computed once
            if zz is None:
                zz = cache[keep.tobytes()] = zc.T @ zc
            self.blocks.append((zz, xs[c].T @ zc, zc.T @ ys[c]))

    def solve(self, alpha: float) -> dict[str, np.ndarray]:
        eye = np.eye(self.lookback)
        if not self.exo:
            mx, my = self.sx / self.n, self.sy / self.n
            gram = self.xx - self.n * np.outer(mx, mx) + alpha * eye
            w = cho_solve(cho_factor(gram), self.xy - self.n * np.outer(mx, my))
            return {"weight": w, "bias": my - mx @ w, "exo": None}
        schur, rhs, parts = self.xx + alpha * eye, self.xy.copy(), []
        for zz, xz, zy in self.blocks:
            pen = np.full(len(zz), alpha)
            pen[-1] = 1e-8                                   # the intercept is not penalized
            fac = cho_factor(zz + np.diag(pen))
            dinv_zx, dinv_zy = cho_solve(fac, xz.T), cho_solve(fac, zy)
            schur -= xz @ dinv_zx
            rhs -= xz @ dinv_zy
            parts.append((dinv_zx, dinv_zy))
        w = cho_solve(cho_factor(schur), rhs)
        exo_w = np.stack([dzy - dzx @ w for dzx, dzy in parts])   # [C, F + 1, H]
        return {"weight": w, "bias": np.zeros(w.shape[1]), "exo": exo_w}


def predict_design(params: dict[str, Any], design: Design, z: np.ndarray | None = None) -> np.ndarray:
    """Forecasts [W, H, C] on the train-standardized scale (`z`: exo_windows, needed with covariates)."""
    out = design.x @ params["weight"] + params["bias"]                   # [W, C, H]
    if params["exo"] is not None:
        c, f, h = params["exo"].shape
        out = out + (z @ params["exo"].transpose(1, 0, 2).reshape(f, c * h)).reshape(len(z), c, h)
    return design.to_data_units(out)


def masked_mse(y: np.ndarray, pred: np.ndarray) -> float:
    ok = ~np.isnan(y)
    return float(np.mean((pred[ok] - y[ok]) ** 2)) if ok.any() else float("nan")


def search(p, lookback: int, horizon: int, alphas, period="auto", norm="auto", exo="auto") -> dict[str, Any]:
    """Every candidate's validation MSE (`table`) and the fitted best of: the candidates asked for (`best`),
    those without covariates (`best_plain`), with them (`best_exo`; None when there are none) and the plain
    ridge (`ridge`: no cycle, global scale, always fitted as the reference baseline)."""
    train_end = p.borders[0][1]
    cycles = ["none", *[c for c in D.CYCLES if D.cycle_keys(p.time[:train_end], c)]] if period == "auto" \
        else [period]
    norms = list(NORMS) if norm == "auto" else [norm]
    has_exo = p.exo.shape[1] > 0
    exos = [False, True] if exo == "auto" and has_exo else [exo is True and has_exo]
    asked = {Spec(c, n, e) for c in cycles for n in norms for e in exos}
    groups: dict[tuple[str, str], list[Spec]] = {}
    for spec in sorted(asked | {Spec()}, key=Spec.label):
        groups.setdefault((spec.cycle, spec.norm), []).append(spec)
    st_tr, st_va = p.starts(0, lookback, horizon), p.starts(1, lookback, horizon)
    y_va = p.window_targets(st_va, lookback, horizon)
    z_tr = exo_windows(p, st_tr, lookback, horizon) if any(s.exo for s in asked) else None
    z_va = exo_windows(p, st_va, lookback, horizon) if z_tr is not None else None
    table, fits, zz_cache = [], [], {}
    for (cycle, nm), specs in groups.items():
        cyc, phase, keys = fit_cycle(p, cycle)
        d_tr = Design(p, st_tr, lookback, horizon, cyc, phase, nm)
        d_va = Design(p, st_va, lookback, horizon, cyc, phase, nm)
        for spec in specs:
            eq = NormalEquations(d_tr, z_tr if spec.exo else None, zz_cache)
            for alpha in map(float, alphas):
                params = eq.solve(alpha)
                mse = masked_mse(y_va, predict_design(params, d_va, z_va))
                table.append({**asdict(spec), "alpha": alpha, "val_mse": mse})
                fits.append({"spec": spec, "alpha": alpha, "val_mse": mse, "cycle": cyc, "keys": keys, **params})
        del d_tr, d_va

    def best(ok) -> dict[str, Any] | None:
        found = [f for f in fits if ok(f["spec"]) and np.isfinite(f["val_mse"])]
        return min(found, key=lambda f: (f["val_mse"], f["spec"].label(), f["alpha"])) if found else None

    chosen = best(lambda s: s in asked)
    if chosen is None:
        raise UserError("no validation window has an observed target: the closed-form forecaster cannot be "
                        "chosen; use other data.sizes or fill the gaps")
    return {"best": chosen, "best_plain": best(lambda s: s in asked and not s.exo),
            "best_exo": best(lambda s: s in asked and s.exo), "ridge": best(lambda s: s == Spec()), "table": table}


def fit_spec(p, lookback: int, horizon: int, spec: Spec, alpha: float) -> dict[str, Any]:
    """One closed form refitted on the training windows (deterministic: the same as during the search)."""
    cyc, phase, keys = fit_cycle(p, spec.cycle)
    st = p.starts(0, lookback, horizon)
    params = NormalEquations(Design(p, st, lookback, horizon, cyc, phase, spec.norm),
                             exo_windows(p, st, lookback, horizon) if spec.exo else None).solve(float(alpha))
    fit = {"spec": spec, "alpha": float(alpha), "cycle": cyc, "keys": keys, **params}
    st_va = p.starts(1, lookback, horizon)
    fit["val_mse"] = masked_mse(p.window_targets(st_va, lookback, horizon), predict(fit, p, st_va, lookback, horizon))
    return fit


def best_in_table(table: list[dict], ok) -> tuple[Spec, float] | None:
    """The (spec, alpha) with the lowest validation MSE among the searched candidates that satisfy `ok`."""
    rows = [r for r in table if np.isfinite(r["val_mse"]) and ok(Spec(r["cycle"], r["norm"], r["exo"]))]
    if not rows:
        return None
    r = min(rows, key=lambda r: (r["val_mse"], Spec(r["cycle"], r["norm"], r["exo"]).label(), r["alpha"]))
    return Spec(r["cycle"], r["norm"], r["exo"]), r["alpha"]


def predict(fit: dict[str, Any], p, starts: np.ndarray, lookback: int, horizon: int) -> np.ndarray:
    """A fitted closed form's forecasts [W, H, C] for the windows of `p` starting at `starts`."""
    spec = fit["spec"]
    phase = D.phases(p.time, spec.cycle, fit["keys"]) if fit["cycle"] is not None \
        else np.zeros(len(p.time), dtype=np.int64)
    return predict_design(fit, Design(p, starts, lookback, horizon, fit["cycle"], phase, spec.norm),
                          exo_windows(p, starts, lookback, horizon) if spec.exo else None)


def summary(fit: dict[str, Any]) -> dict[str, Any]:
    """What the run records about a chosen closed form (JSON-safe)."""
    return {**asdict(fit["spec"]), "alpha": fit["alpha"], "val_mse": fit["val_mse"],
            "phases": None if fit["keys"] is None else len(fit["keys"])}
