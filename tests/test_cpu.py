"""`core.cpu.reuse_freed_memory`: glibc keeps freed activation memory for the next tensor instead of mapping
fresh pages (each zeroed by the kernel on first touch) for every pass."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A fresh interpreter per setting: mallopt changes the process for good. Counts minor page faults (pages the
# kernel had to map and zero) over 20 passes of a forward pass's allocation pattern, through glibc's malloc
# itself: torch's CPU allocator is malloc, and a real encoder's count varies from run to run with the heap
# layout (2,900-72,000 by default), while this pattern gives the same count every run.
SCRIPT = """
import ctypes, resource, sys
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "tuned":
    from core.cpu import reuse_freed_memory
    assert reuse_freed_memory()
MiB = 1 << 20

def one_pass():  # activations of one forward pass: blocks of a few MiB alive together, then all freed
    blocks = [libc.malloc(size * MiB) for size in (4, 6, 4, 8, 4, 6)]
    for b, size in zip(blocks, (4, 6, 4, 8, 4, 6)):
        ctypes.memset(b, 1, size * MiB)   # touch every page, as a tensor write does
    for b in blocks:
        libc.free(b)

for _ in range(3):
    one_pass()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    one_pass()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=os.path.dirname(os.path.dirname(__file__)))
    return int(out.stdout.split()[-1])


def test_freed_activations_are_reused_not_mapped_again():
    from core.cpu import reuse_freed_memory
    if not reuse_freed_memory():
        pytest.skip("needs glibc's mallopt (Linux with glibc): elsewhere the setting is a no-op")
    default, tuned = _page_faults("default"), _page_faults("tuned")
    # measured on x86_64 glibc 2.36: 163,200 faults by default (every pass maps its 32 MiB afresh: the
    # control, the test can fail), 0 tuned
    assert tuned * 10 < default, (default, tuned)


def test_reuse_freed_memory_is_harmless_to_call_twice():
    from core.cpu import reuse_freed_memory
    first = reuse_freed_memory()
    assert reuse_freed_memory() == first
