"""Batched Poisson maximum likelihood (torch, float64): every pixel of a batch is fitted at once.

The forward model is `flim.components`' closed form (the gate-integrated exponential kernel is geometric, so
the IRF convolution is a running log-sum-exp over the IRF's support; earlier laser pulses add a constant times
exp(-t/tau)), with its derivative wrt log(tau) in closed form too. The fit is Levenberg-Marquardt with the
multinomial Fisher information (Poisson counts given their total: the amplitude is profiled out), box bounds
by projection with the bound-active parameters frozen, per-pixel damping and acceptance. Parameters:
log tau1, log tau2, A (mono-exponential: log tau). Start: the best point of a coarse grid (also the start of
the scipy reference fitter in `fit.py`). Where the prior allows mono-exponential pixels, both models are
fitted and the Akaike criterion picks one (a fixed textbook rule, not tuned).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from domains.spectra.flim import FlimSetting, period_mask

DTYPE = torch.float64
BATCH = 1024           # pixels per batch (memory: the start grid holds [batch, pairs, gates] float64)
A_GRID = (0.03, 0.1, 0.25, 0.5, 0.75, 0.9, 0.97)
N_TAU_GRID = 10        # coarse start grid per lifetime range
START_BINS = 48        # the start grid scores counts pooled into ~this many bins (cheap; LM is exact)
AIC_EXTRA = 2          # parameters the bi-exponential model adds (tau2, A)


class Forward:
    """Exponential components of a batch of pixels with their IRFs, and d/d(log tau) of them."""

    def __init__(self, irf, gate: float, period: float):
        irf = torch.as_tensor(np.asarray(irf), dtype=DTYPE)
        self.n, self.gates = irf.shape
        nonzero = torch.nonzero(irf.sum(0) > 0)
        self.k_support = int(nonzero.max()) + 1 if len(nonzero) else 1   # beyond it the running sum is constant
        ir = irf[:, : self.k_support]
        self.log_irf = torch.where(ir > 0, ir.clamp_min(1e-300).log(), torch.tensor(-math.inf, dtype=DTYPE))[:, None]
        idx = torch.arange(self.k_support, dtype=DTYPE)
        self.log_idx = torch.where(idx > 0, idx.clamp_min(1).log(), torch.tensor(-math.inf, dtype=DTYPE))
        self.idx, self.k = idx, torch.arange(self.gates, dtype=DTYPE)
        self.gate, self.period = gate, period
        self.mask = torch.as_tensor(period_mask(self.gates, gate, period), dtype=DTYPE)
        self.pool = pool_matrix(self.gates, int(irf.argmax(1).median()) if self.n else 0)

    def subset(self, rows: torch.Tensor) -> "Forward":
        other = object.__new__(Forward)
        other.__dict__.update(self.__dict__)
        other.log_irf, other.n = self.log_irf[rows], len(rows)
        return other

    def _extend(self, run: torch.Tensor) -> torch.Tensor:
        pad = self.gates - run.shape[-1]
        return torch.cat([run, run[..., -1:].expand(*run.shape[:-1], pad)], -1) if pad > 0 else run

    def __call__(self, tau: torch.Tensor, deriv: bool = False):
        """tau [n, m] -> components [n, m, G] (and their derivative wrt log tau)."""
        g, x = self.gate, (1.0 / tau)[..., None]
        lin = self.log_irf + self.idx * g * x
        run = torch.logcumsumexp(lin, -1)
        damp = -self.k * g * x
        e = torch.exp(self._extend(run) + damp)
        f = torch.exp(run[..., -1:] + damp)
        wrap = 1.0 / torch.expm1(self.period * x)
        pref = -torch.expm1(-g * x) / x
        c = pref * (e + wrap * f) * self.mask
        if not deriv:
            return c
        run2 = torch.logcumsumexp(lin + self.log_idx, -1)
        de = g * (torch.exp(self._extend(run2) + damp) - self.k * e)
        df = g * (torch.exp(run2[..., -1:] + damp) - self.k * f)
        dwrap = -self.period * wrap * (1 + wrap)
        dpref = g * torch.exp(-g * x) / x - pref / x
        dc_dx = (dpref * (e + wrap * f) + pref * (de + dwrap * f + wrap * df)) * self.mask
        return c, -x * dc_dx        # d/d(log tau) = -x d/dx


def _nll(y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Multinomial negative log-likelihood (up to a constant) of counts y given rates r: [..., G] -> [...]."""
    return -(y * r.clamp_min(1e-300).log()).sum(-1) + y.sum(-1) * r.sum(-1).log()


def _rates(fwd: Forward, theta: torch.Tensor, mono: bool, deriv: bool = False):
    if mono:
        out = fwd(theta[:, :1].exp(), deriv)
        return (out[0][:, 0], out[1][:, 0, :, None]) if deriv else out[:, 0]
    tau = theta[:, :2].exp()
    a = theta[:, 2:3]
    out = fwd(tau, deriv)
    c = out[0] if deriv else out
    r = a * c[:, 0] + (1 - a) * c[:, 1]
    if not deriv:
        return r
    d = out[1]
    jac = torch.stack([a * d[:, 0], (1 - a) * d[:, 1], c[:, 0] - c[:, 1]], -1)
    return r, jac


def _bounds(setting: FlimSetting, mono: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if mono:
        lo, hi = setting.support()
        return torch.tensor([math.log(lo)], dtype=DTYPE), torch.tensor([math.log(hi)], dtype=DTYPE)
    return (torch.tensor([math.log(setting.tau1[0]), math.log(setting.tau2[0]), 0.0], dtype=DTYPE),
            torch.tensor([math.log(setting.tau1[1]), math.log(setting.tau2[1]), 1.0], dtype=DTYPE))


def pool_matrix(gates: int, peak: int, bins: int = START_BINS) -> torch.Tensor:
    """[G, B] 0/1 pooling: gates before the rise in one bin, 1-gate bins over the rise and the first gates
    of the decay (short lifetimes live there), then geometrically wider bins to the end of the window."""
    start, fine = max(1, peak - 6), 18
    edges = [0, *range(start, min(gates, start + fine))]
    if edges[-1] < gates - 1:
        rest = np.geomspace(1, gates - edges[-1], max(2, bins - len(edges) + 1)) + edges[-1] - 1
        edges += sorted(set(np.round(rest).astype(int).tolist()) - set(edges))
    edges = np.unique(np.clip([*edges, gates], 0, gates))
    pool = np.zeros((gates, len(edges) - 1))
    for j in range(len(edges) - 1):
        pool[edges[j]:edges[j + 1], j] = 1.0
    return torch.as_tensor(pool, dtype=DTYPE)


def grid_start(fwd: Forward, y: torch.Tensor, setting: FlimSetting, mono: bool) -> torch.Tensor:
    """The best point of a coarse grid per pixel: [n, 1] (log tau) or [n, 3] (log tau1, log tau2, A)."""
    y = y @ fwd.pool
    if mono:
        taus = torch.tensor(np.geomspace(*setting.support(), 2 * N_TAU_GRID), dtype=DTYPE)
        c = fwd(taus.expand(fwd.n, -1)) @ fwd.pool
        best = _nll(y[:, None], c).argmin(1)
        return taus.log()[best][:, None]
    t1 = np.geomspace(*setting.tau1, N_TAU_GRID)
    t2 = np.geomspace(*setting.tau2, N_TAU_GRID)
    grid = np.unique(np.concatenate([t1, t2]))                       # one set when the ranges coincide
    taus = torch.tensor(grid, dtype=DTYPE)
    c = fwd(taus.expand(fwd.n, -1)) @ fwd.pool                       # [n, taus, bins]
    i1, i2 = (v.ravel() for v in np.meshgrid(np.searchsorted(grid, t1), np.searchsorted(grid, t2), indexing="ij"))
    keep = grid[i1] < grid[i2]
    i1, i2 = torch.as_tensor(i1[keep]), torch.as_tensor(i2[keep])
    a = torch.tensor(A_GRID, dtype=DTYPE)
    c1, c2 = c[:, i1], c[:, i2]                                      # [n, P, G]
    nll = torch.stack([_nll(y[:, None], v * c1 + (1 - v) * c2) for v in a], 1).reshape(fwd.n, -1)   # [n, A * P]
    best = nll.argmin(1)
    ai, pi = best // len(i1), best % len(i1)
    return torch.stack([taus[i1[pi]].log(), taus[i2[pi]].log(), a[ai]], 1)


def fisher(fwd: Forward, y: torch.Tensor, theta: torch.Tensor, mono: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient [n, P] of the negative log-likelihood and the multinomial Fisher information [n, P, P]."""
    r, jac = _rates(fwd, theta, mono, deriv=True)                     # [n, G], [n, G, P]
    r = r.clamp_min(1e-300)
    total, s_r, s_j = y.sum(-1), r.sum(-1), jac.sum(1)
    grad = -(jac * (y / r)[..., None]).sum(1) + (total / s_r)[:, None] * s_j
    info = total[:, None, None] * (torch.einsum("ngp,ngq->npq", jac, jac / (r * s_r[:, None])[..., None])
                                   - s_j[:, :, None] * s_j[:, None, :] / (s_r ** 2)[:, None, None])
    return grad, info


def levenberg_marquardt(fwd: Forward, y: torch.Tensor, theta: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                        mono: bool, max_iter: int = 100, tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected LM on the multinomial likelihood; returns (theta, nll) per pixel."""
    n, p = theta.shape
    lam = torch.full((n,), 1e-2, dtype=DTYPE)
    nll = _nll(y, _rates(fwd, theta, mono))
    active = torch.arange(n)
    eye = torch.eye(p, dtype=DTYPE)
    for _ in range(max_iter):
        if not len(active):
            break
        f, th, ya = fwd.subset(active), theta[active], y[active]
        grad, info = fisher(f, ya, th, mono)
        # parameters at a bound whose gradient pushes outward stay there this step
        frozen = ((th <= lo) & (grad > 0)) | ((th >= hi) & (grad < 0))
        keep = (~frozen).to(DTYPE)
        info = info * keep[:, :, None] * keep[:, None, :] + torch.diag_embed(1 - keep)
        damp = lam[active][:, None, None] * (torch.diagonal(info, dim1=1, dim2=2)[..., None] * eye + 1e-9 * eye)
        step = torch.linalg.solve(info + damp, -(grad * keep)[..., None])[..., 0]
        trial = torch.minimum(torch.maximum(th + step, lo), hi)
        new = _nll(ya, _rates(f, trial, mono))
        better = new < nll[active]
        gain = nll[active] - new
        theta[active] = torch.where(better[:, None], trial, th)
        nll[active] = torch.where(better, new, nll[active])
        lam[active] = torch.where(better, lam[active] / 3, lam[active] * 5)
        done = (better & (gain < tol)) | (lam[active] > 1e10)   # tol: log-likelihood units
        active = active[~done]
    return theta, nll


def fit_theta(fwd: Forward, y: torch.Tensor, setting: FlimSetting, mono: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """MLE parameters (log taus, A) and nll of one model for a batch, from the grid start."""
    return levenberg_marquardt(fwd, y, grid_start(fwd, y, setting, mono), *_bounds(setting, mono), mono=mono)


def _ordered(t1, t2, a) -> dict[str, np.ndarray]:
    t1, t2, a = (np.asarray(v, float) for v in (t1, t2, a))
    swap = t1 > t2
    t1, t2, a = np.where(swap, t2, t1), np.where(swap, t1, t2), np.clip(np.where(swap, 1 - a, a), 0, 1)
    return {"tau1": t1, "tau2": t2, "a": a, "tau_m": a * t1 + (1 - a) * t2}


def fit_batch(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting, starts: bool = False) -> dict[str, np.ndarray]:
    """Fit one batch; with `starts`, also return the grid starts (for the scipy reference fitter)."""
    y = torch.as_tensor(np.asarray(counts), dtype=DTYPE)
    fwd = Forward(irf, setting.gate_ns, setting.period_ns)
    if starts:
        return {"start": grid_start(fwd, y, setting, mono=False).numpy(),
                "start_mono": grid_start(fwd, y, setting, mono=True).numpy()}
    theta, nll = fit_theta(fwd, y, setting, mono=False)
    out = _ordered(theta[:, 0].exp().numpy(), theta[:, 1].exp().numpy(), theta[:, 2].numpy())
    out["nll"], out["mono"] = nll.numpy(), np.zeros(len(y), bool)
    if setting.mono_fraction > 0:
        m_theta, m_nll = fit_theta(fwd, y, setting, mono=True)
        mono = (2 * (m_nll - nll) <= 2 * AIC_EXTRA).numpy()
        tau = m_theta[:, 0].exp().numpy()
        for key, value in (("tau1", tau), ("tau2", tau), ("a", 1.0), ("tau_m", tau)):
            out[key] = np.where(mono, value, out[key])
        out["nll"], out["mono"] = np.where(mono, m_nll.numpy(), out["nll"]), mono
    return out


def fit_fast(counts: np.ndarray, irf: np.ndarray, setting: FlimSetting, batch: int = BATCH) -> dict[str, np.ndarray]:
    """Batched Poisson MLE of every pixel: {tau1, tau2, a, tau_m, nll, mono} arrays (tau1 <= tau2)."""
    parts = [fit_batch(counts[i:i + batch], irf[i:i + batch], setting) for i in range(0, len(counts), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
