"""The attention switch's registry: one string in the config selects a backend.

Every backend works on the packed varlen layout (see ``core.packing``) and has the signature

    fn(q, k, v, cu_seqlens, max_seqlen, cos=None, sin=None, **params) -> out

with q, k, v, out of shape [T, H, Dh] and optional rotary tables cos/sin [T, Dh]. Rotary is applied
inside the backend so that a fused GPU kernel can do it in the same pass. Attention is bidirectional,
scaled by 1/sqrt(Dh) and never crosses sequence boundaries. A backend with learned parameters of its own
(differential attention's lambda) declares a `parameters` factory: `MultiHeadAttention` owns the module it
builds and passes what that module returns as `**params`.

GPU kernels (e.g. Triton) plug in by calling :func:`register_attention` with ``devices=("cuda",)`` and
``requires=("triton",)``; :func:`resolve_attention` falls back to the reference of the same ``kind``
when they cannot run, so a config written for a GPU still runs (slowly) on a laptop.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from core.rotary import apply_rotary

log = logging.getLogger("sciformer.attention")

ANY_DEVICE = "*"  # wildcard for AttentionBackend.devices: runs wherever torch runs


@dataclass(frozen=True)
class AttentionBackend:
    name: str
    fn: Callable[..., Tensor]
    kind: str  # "softmax" | "linear" | "differential"; fallbacks stay within a kind
    devices: tuple[str, ...]  # torch device types, or (ANY_DEVICE,)
    requires: tuple[str, ...] = ()  # python modules that must import, e.g. ("triton",)
    supports_backward: bool = True
    description: str = ""
    fallback: str | None = None  # backend to use where this one cannot run (default: the kind's reference)
    # head_dim -> nn.Module whose forward() returns extra keyword arguments for `fn` (learned per-layer
    # parameters of the backend); backends of one kind share it, so a fallback keeps the same parameters
    parameters: Callable[[int], nn.Module] | None = None

    def runs_on(self, device: torch.device) -> bool:
        return ANY_DEVICE in self.devices or device.type in self.devices


_REGISTRY: dict[str, AttentionBackend] = {}
_REFERENCE_FOR_KIND: dict[str, str] = {}  # kind -> name of the always-available oracle backend
_WARNED: set[tuple[str, str]] = set()  # (requested name, device type) already warned about
_IMPORTABLE: dict[str, bool] = {}


def register_attention(backend: AttentionBackend, *, reference: bool = False) -> AttentionBackend:
    """Add (or replace) a backend. ``reference=True`` makes it the fallback for its kind."""
    _REGISTRY[backend.name] = backend
    if reference:
        _REFERENCE_FOR_KIND[backend.kind] = backend.name
    return backend


def unregister_attention(name: str) -> None:
    """Remove a backend (used by tests that register throw-away backends)."""
    _REGISTRY.pop(name, None)
    for kind, ref in list(_REFERENCE_FOR_KIND.items()):
        if ref == name:
            del _REFERENCE_FOR_KIND[kind]


def available_attention() -> dict[str, AttentionBackend]:
    """All registered backends by name (a copy; includes ones that cannot run here)."""
    return dict(_REGISTRY)


def get_backend(name: str) -> AttentionBackend:
    if name not in _REGISTRY:
        raise ValueError(f"unknown attention backend {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def _importable(module: str) -> bool:
    if module not in _IMPORTABLE:
        try:
            importlib.import_module(module)
            _IMPORTABLE[module] = True
        except Exception:  # a broken install (not only ImportError) also means "cannot use it"
            _IMPORTABLE[module] = False
    return _IMPORTABLE[module]


def _why_unusable(backend: AttentionBackend, device: torch.device, need_backward: bool) -> str | None:
    if not backend.runs_on(device):
        return f"it runs on {backend.devices}, not on device type '{device.type}'"
    missing = [m for m in backend.requires if not _importable(m)]
    if missing:
        return f"required module(s) {missing} cannot be imported"
    if need_backward and not backend.supports_backward:
        return "it has no backward pass and gradients are needed"
    return None


def resolve_attention(
    name: str, device: torch.device | str, need_backward: bool = False
) -> AttentionBackend:
    """The backend called ``name`` if it can run on ``device``, else the reference of its kind.

    Unknown names raise ValueError listing the known ones. A fallback to the kind's reference warns once per
    (name, device type); a backend's own declared `fallback` (e.g. a GPU kernel's vectorized CPU path) is the
    designed behaviour, so it is only logged, and a GPU default does not warn on every CPU run.
    """
    device = torch.device(device)
    backend = get_backend(name)
    reason = _why_unusable(backend, device, need_backward)
    if reason is None:
        return backend
    ref_name = backend.fallback or _REFERENCE_FOR_KIND.get(backend.kind)
    if ref_name is None or ref_name == name:
        raise RuntimeError(f"attention backend {name!r} cannot be used: {reason}; "
                           f"no fallback for kind {backend.kind!r}")
    if (name, device.type) not in _WARNED and backend.fallback:
        _WARNED.add((name, device.type))
        log.info("attention backend %r: %s; using its declared fallback %r", name, reason, ref_name)
    elif (name, device.type) not in _WARNED:
        _WARNED.add((name, device.type))
        warnings.warn(
            f"attention backend {name!r} cannot be used: {reason}; falling back to {ref_name!r}",
            RuntimeWarning,
            stacklevel=2,
        )
    return _REGISTRY[ref_name]


def spans(cu_seqlens: Tensor) -> list[tuple[int, int]]:
    """(start, end) token ranges of the packed sequences (for the references' explicit loops)."""
    cu = cu_seqlens.tolist()
    return list(zip(cu[:-1], cu[1:]))


def rotate(x: Tensor, cos: Tensor | None, sin: Tensor | None) -> Tensor:
    return x if cos is None else apply_rotary(x, cos, sin)
