"""`sciformer doctor`: does every design-card package import and do one real thing? Plus device facts."""
from __future__ import annotations

import importlib
import os
import platform
from importlib import metadata
from typing import Callable


def _torch() -> str:
    import torch
    return f"matmul sum {float((torch.ones(2, 2) @ torch.ones(2, 1)).sum()):.0f}"


def _rdkit() -> str:
    from rdkit import Chem
    return f"CCO -> {Chem.MolToSmiles(Chem.MolFromSmiles('OCC'))}"


def _pyg() -> str:
    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import degree
    d = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
    return f"degree {degree(d.edge_index[0], 2).tolist()}"


def _mmpose() -> str:
    import numpy as np
    from mmpose.structures.bbox import bbox_xyxy2cs
    center, scale = bbox_xyxy2cs(np.array([[0.0, 0.0, 10.0, 20.0]]))
    return f"bbox center {center.tolist()[0]}"


def _open3d() -> str:
    import numpy as np
    import open3d as o3d
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.random.default_rng(0).random((100, 3))))
    return f"{len(pcd.voxel_down_sample(0.5).points)} points after voxel downsampling"


def _librosa() -> str:
    import librosa
    import numpy as np
    y = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050).astype(np.float32)
    return f"mel {librosa.feature.melspectrogram(y=y, sr=22050).shape}"


def _snakemake() -> str:
    from snakemake.io import expand
    return f"expand -> {expand('{x}.txt', x=[1, 2])}"


def _scipy() -> str:
    from scipy.optimize import minimize_scalar
    return f"argmin {minimize_scalar(lambda x: (x - 2) ** 2).x:.2f}"


def _pandas() -> str:
    import pandas as pd
    return f"mean {pd.Series([1, 2, 3]).mean()}"


CHECKS: list[tuple[str, str, Callable[[], str]]] = [
    ("torch", "torch", _torch), ("rdkit", "rdkit", _rdkit), ("torch-geometric", "torch_geometric", _pyg),
    ("mmpose", "mmpose", _mmpose), ("open3d-cpu", "open3d", _open3d), ("librosa", "librosa", _librosa),
    ("snakemake", "snakemake", _snakemake), ("scipy", "scipy", _scipy), ("pandas", "pandas", _pandas),
]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def run_doctor() -> int:
    import warnings
    warnings.filterwarnings("ignore")
    failures = 0
    print(f"{'package':<16} {'version':<14} status")
    for dist, module, check in CHECKS:
        try:
            importlib.import_module(module)
            status = "ok: " + check()
        except Exception as exc:  # report, don't stop: the point is to see every problem at once
            failures += 1
            status = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
        print(f"{dist:<16} {_version(dist):<14} {status}")
    import torch
    cuda = torch.cuda.is_available()
    print(f"\npython {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPU cores")
    print(f"device: {'cuda: ' + torch.cuda.get_device_name(0) if cuda else 'cpu (no CUDA device visible)'}")
    print(f"torch threads: {torch.get_num_threads()} intra-op (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    try:
        import triton
        print(f"triton: {triton.__version__}" + ("" if cuda else " (installed; kernels run only on a GPU or "
                                                  "in TRITON_INTERPRET=1 tests)"))
    except ImportError:
        print("triton: not installed (GPU kernels unavailable; install the `gpu` extra on a CUDA machine)")
    print(f"\n{len(CHECKS) - failures}/{len(CHECKS)} packages work")
    return 1 if failures else 0
