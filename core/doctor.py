"""`sciformer doctor`: does every package work? The core's own packages do one real thing each; every domain's
declared `requirements` must import, and the domain's `self_check` makes one real call into its field package
(rdkit parses a SMILES, open3d down-samples a cloud, librosa computes a mel spectrogram...). Plus device facts."""
from __future__ import annotations

import importlib
import os
import platform
from importlib import metadata
from typing import Callable


def _torch() -> str:
    import torch
    return f"matmul sum {float((torch.ones(2, 2) @ torch.ones(2, 1)).sum()):.0f}"


def _snakemake() -> str:
    from snakemake.io import expand
    return f"expand -> {expand('{x}.txt', x=[1, 2])}"


def _scipy() -> str:
    from scipy.optimize import minimize_scalar
    return f"argmin {minimize_scalar(lambda x: (x - 2) ** 2).x:.2f}"


def _pandas() -> str:
    import pandas as pd
    return f"mean {pd.Series([1, 2, 3]).mean()}"


CORE_CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("torch", _torch), ("snakemake", _snakemake), ("scipy", _scipy), ("pandas", _pandas)]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _import_names(dist: str) -> list[str]:
    """The modules a distribution provides (open3d-cpu -> open3d, scikit-learn -> sklearn)."""
    names = [m for m, dists in metadata.packages_distributions().items() if dist.lower() in
             (d.lower() for d in dists) and not m.startswith("_")]
    # the module named like the distribution, when there is one: pybullet's wheel also ships eglRenderer (needs EGL)
    own = [m for m in names if m.lower() == dist.lower().replace("-", "_")]
    return own or names or [dist.replace("-", "_")]


def _line(name: str, version: str, check: Callable[[], str]) -> bool:
    try:
        status, ok = "ok: " + check(), True
    except Exception as exc:  # report, don't stop: the point is to see every problem at once
        status, ok = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:90] if str(exc) else ''}", False
    print(f"{name:<24} {version:<14} {status}")
    return ok


def run_doctor() -> int:
    import warnings
    warnings.filterwarnings("ignore")
    from core.domain import broken_domains, iter_domains
    results = []
    print(f"{'package':<24} {'version':<14} status")
    for dist, check in CORE_CHECKS:
        results.append(_line(dist, _version(dist), check))
    for dom in iter_domains():
        for dist in dom.requirements:
            results.append(_line(f"{dist} ({dom.name})", _version(dist),
                                 lambda d=dist: "imports " + ", ".join(
                                     importlib.import_module(m).__name__ for m in _import_names(d)[:2])))
        results.append(_line(f"domain {dom.name}", "", dom.self_check))
    for name, why in broken_domains().items():
        results.append(_line(f"domain {name}", "", lambda why=why: (_ for _ in ()).throw(ImportError(why))))
    import torch
    cuda = torch.cuda.is_available()
    print(f"\npython {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPU cores")
    print(f"device: {'cuda: ' + torch.cuda.get_device_name(0) if cuda else 'cpu (no CUDA device visible)'}")
    from core.predict import native_cpu_bf16
    print("CPU bf16 instructions: " + ("yes (`predict --precision bf16` is faster here)" if native_cpu_bf16() else
                                       "no (`predict --precision bf16` would be emulated, slower than fp32)"))
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"torch threads: {torch.get_num_threads()} intra-op (OMP_NUM_THREADS={omp})")
    try:
        import triton
        print(f"triton: {triton.__version__}" + ("" if cuda else " (installed; kernels run only on a GPU or "
                                                  "in TRITON_INTERPRET=1 tests)"))
    except ImportError:
        print("triton: not installed (GPU kernels unavailable; install the `gpu` extra on a CUDA machine)")
    print(f"\n{sum(results)}/{len(results)} checks pass")
    return 0 if all(results) else 1
