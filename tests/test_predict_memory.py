"""Prediction memory stays flat over inputs of many shapes: `core.predict.no_shape_cache` keeps oneDNN from
caching one compiled kernel per input shape (the growth found at 1M molecules)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Each run starts a fresh interpreter: oneDNN reads its cache size once per process, at its first kernel.
SCRIPT = """
import ctypes, sys
import torch
if sys.argv[1] == "predict":
    from core.predict import no_shape_cache
    no_shape_cache()
torch.set_num_threads(1)
trim = ctypes.CDLL("libc.so.6").malloc_trim
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
gen = torch.Generator().manual_seed(0)
torch.nn.functional.gelu(torch.zeros(3, 5, 64))
trim(0)
before = rss()
for _ in range(2000):  # a new [batch, length] shape almost every call, as in prediction
    b, n = (int(v) for v in torch.randint(1, 129, (2,), generator=gen))
    torch.nn.functional.gelu(torch.zeros(b, n, 64))
trim(0)
print(rss() - before)
"""


def _growth_mib(mode: str) -> float:
    env_clean = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env={**env_clean, "OMP_NUM_THREADS": "1"})
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's malloc_trim")
def test_prediction_does_not_cache_a_kernel_per_shape():
    import torch
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN: there is no per-shape kernel cache to bound")
    default, bounded = _growth_mib("default"), _growth_mib("predict")
    assert bounded < 20, f"resident memory grew {bounded:.1f} MiB over 2,000 shapes with prediction's setting"
    # the control shows the test can fail: oneDNN's default cache grows with the number of shapes seen
    assert default > bounded + 15, (default, bounded)
