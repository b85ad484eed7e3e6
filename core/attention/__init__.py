"""The attention switch: `encoder.attention` names a backend in a registry (see ``registry``).

One module per family, as flash-linear-attention's ``fla/ops/<family>/`` has one per op:
``softmax`` (reference, sdpa), ``linear`` (linear, linear_reference), ``differential`` (diff, diff_reference),
``module`` (MultiHeadAttention and the padded adapter), and below them ``kernels`` (custom ops and Triton
kernels: linear_fused, linear_op, varlen), which import only the registry and the family references.
Importing this package registers every backend (it never imports triton: kernels load it on first CUDA call).
"""

from core.attention import differential, linear, softmax  # noqa: F401  (registration on import)
from core.attention.kernels import register_kernel_backends
from core.attention.module import MultiHeadAttention, padded_attention
from core.attention.registry import (
    ANY_DEVICE,
    AttentionBackend,
    available_attention,
    get_backend,
    register_attention,
    resolve_attention,
    unregister_attention,
)

register_kernel_backends()

__all__ = ["ANY_DEVICE", "AttentionBackend", "MultiHeadAttention", "available_attention", "get_backend",
           "padded_attention", "register_attention", "resolve_attention", "unregister_attention"]
