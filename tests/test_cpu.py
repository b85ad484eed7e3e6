"""`core.cpu.reuse_freed_memory`: glibc keeps freed activation memory for the next tensor instead of mapping
fresh pages (each zeroed by the kernel on first touch) for every layer of every batch."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A fresh interpreter per setting: mallopt changes the process for good. Counts minor page faults (pages the
# kernel had to map and zero) while a 4-layer encoder runs the same 10 molecule-sized batches x 3 members a
# second time: memory the first pass freed should serve the second.
SCRIPT = """
import resource, sys, torch
if sys.argv[1] == "tuned":
    from core.cpu import reuse_freed_memory
    assert reuse_freed_memory()
torch.set_num_threads(1)
from core.encoder import Encoder, EncoderConfig
from core.packing import lengths_to_cu_seqlens
enc = Encoder(EncoderConfig(d_model=128, n_heads=4, n_layers=4, d_ff=512, attention="linear", max_len=256)).eval()

def run_batches():
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        b, n = 128, int(torch.randint(20, 60, (1,), generator=gen))
        lengths = torch.full((b,), n)
        for _ in range(3):  # ensemble members
            enc(torch.randn(b * n, 128, generator=gen), lengths_to_cu_seqlens(lengths), n)

with torch.inference_mode():
    run_batches()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    run_batches()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=os.path.dirname(os.path.dirname(__file__)))
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists("/proc/self/statm"),
                    reason="glibc's mallopt and Linux page-fault counts")
def test_freed_activations_are_reused_not_mapped_again():
    default, tuned = _page_faults("default"), _page_faults("tuned")
    # measured on x86_64 glibc 2.36: 250,000-700,000 faults by default (the control: the test can fail),
    # 0-4,000 tuned
    assert tuned * 10 < default, (default, tuned)


def test_reuse_freed_memory_is_harmless_to_call_twice():
    from core.cpu import reuse_freed_memory
    first = reuse_freed_memory()
    assert reuse_freed_memory() == first
