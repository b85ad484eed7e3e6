"""How glibc hands freed memory back: tuned once per process for torch's allocation pattern on CPU."""
from __future__ import annotations

import ctypes
import sys

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20   # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 256 << 20
TOP_PAD = 64 << 20


def reuse_freed_memory() -> bool:
    """Let glibc keep freed memory for the next tensor instead of handing it back to the OS at once.

    Why: by default glibc serves each allocation above its mmap threshold (128 KiB, raised as large blocks are
    freed) with a fresh mapping, and trims the heap whenever 128 KiB lie free at its top. A forward pass
    allocates and frees activations of several MiB per layer, so every one came back as new pages, each
    zeroed by the kernel on first touch. Serving blocks up to 32 MiB from the heap and trimming only past
    256 MiB free reuses the same pages: a default-model `predict` of 5,000 molecules faulted 1.78M pages before,
    0.17M after, and ran 7-15 % faster at one thread with the same peak memory (docs/benchmarks.md, Molecules).
    Memory is not lost: freed blocks are reused, and the heap still shrinks once 256 MiB
    lie free. Returns False where the C library is not glibc (nothing changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in
               ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
