"""GPU kernels for the attention switch, behind ``torch.library`` custom ops (see ``ops``).

Importing this package never imports triton: the Triton modules (``triton_linear``, ``triton_rotary``)
are loaded on the first CUDA call, so CPU-only installs work and TRITON_INTERPRET can be set late.
Call :func:`register_kernel_backends` once to add ``linear_fused``, ``linear_op`` and ``varlen`` to
the attention registry.
"""
from core.attention.kernels.ops import (
    linear_attention_rotary,
    register_kernel_backends,
    rotary_packed,
    triton_available,
    varlen_attention,
)

__all__ = ["linear_attention_rotary", "register_kernel_backends", "rotary_packed", "triton_available",
           "varlen_attention"]
