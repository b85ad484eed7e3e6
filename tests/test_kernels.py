"""Kernel custom ops (core.attention.kernels) on CPU: float64 references, gradcheck, opcheck, Triton in interpreter
mode, and ahead-of-time compilation of every Triton kernel configuration for Hopper (sm_90).

Three groups:
  * always run: the ops' PyTorch references against core.attention's oracles (float64), packed vs
    per-sequence results, gradcheck, opcheck, torch.compile tracing, backend registration;
  * interpreter: the Triton kernels executed on CPU with TRITON_INTERPRET=1. The variable must be set
    before triton's first import, so these checks run once in a subprocess (this file run as a
    script) and each test asserts one of its results; fp32/fp16 only, tiny grids;
  * hopper: triton.compile(..., target=GPUTarget("cuda", 90, 32)) catches shape/tiling errors that the
    interpreter accepts (e.g. tl.dot with K < 16) without a GPU.
The last two skip when triton is not installed (it belongs to the `gpu` extra).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # also when run as a script (the interpreter subprocess)

from core import attention as A  # noqa: E402
from core.attention import linear as L  # noqa: E402
from core.attention import registry as R  # noqa: E402
from core.attention import softmax as S  # noqa: E402
from core.attention.kernels import ops  # noqa: E402
from core.packing import lengths_to_cu_seqlens, positions_from_cu_seqlens, unpack  # noqa: E402
from core.rotary import rotary_cos_sin  # noqa: E402

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install '.[gpu]')")

# Edge cases: empty sequences, length 1, lengths that are not powers of two, one long among short ones.
LENGTHS = [[1, 5, 17, 3], [4, 0, 6, 0, 1], [0], [7], [40, 1, 2, 1, 3, 0, 1]]
H, DH = 2, 8


def make_inputs(lengths, heads=H, dh=DH, dtype=torch.float64, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    cu = lengths_to_cu_seqlens(torch.tensor(lengths))
    total = int(cu[-1])
    q, k, v = (torch.randn(total, heads, dh, dtype=dtype, generator=g).requires_grad_(grad) for _ in range(3))
    cos, sin = rotary_cos_sin(positions_from_cu_seqlens(cu, total), dh, dtype=dtype)
    return q, k, v, cu, max(lengths), cos, sin


# ============================================================================ references (always run)


@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("rotary", [True, False])
def test_linear_op_matches_oracle(lengths, rotary):
    q, k, v, cu, max_len, cos, sin = make_inputs(lengths)
    cs = (cos, sin) if rotary else (None, None)
    out = ops.linear_attention_rotary(q, k, v, cu, max_len, *cs)
    assert out.dtype == torch.float64 and out.shape == v.shape
    torch.testing.assert_close(out, L.linear_reference_attention(q, k, v, cu, max_len, *cs), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("lengths", LENGTHS)
def test_varlen_op_matches_oracle_and_padded_sdpa(lengths):
    q, k, v, cu, max_len, cos, sin = make_inputs(lengths)
    out = ops.varlen_attention(q, k, v, cu, max_len, cos, sin)
    torch.testing.assert_close(out, S.reference_attention(q, k, v, cu, max_len, cos, sin), rtol=1e-10, atol=1e-10)
    # The padded computation written out: SDPA with a key-padding mask on [B, H, L, Dh].
    rq, rk = ops.rotary_packed(q, cos, sin), ops.rotary_packed(k, cos, sin)
    (qb, mask), (kb, _), (vb, _) = (unpack(t, cu, max_len) for t in (rq, rk, v))
    keys = (mask | ~mask.any(1, keepdim=True))[:, None, None, :]
    padded = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (qb, kb, vb)), attn_mask=keys)
    torch.testing.assert_close(out, padded.transpose(1, 2)[mask], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fn", [ops.linear_attention_rotary, ops.varlen_attention], ids=["linear", "varlen"])
def test_packed_equals_one_sequence_at_a_time(fn):
    q, k, v, cu, max_len, cos, sin = make_inputs(LENGTHS[4])
    packed = fn(q, k, v, cu, max_len, cos, sin)
    bounds = cu.tolist()
    for s, e in zip(bounds[:-1], bounds[1:]):
        alone = fn(q[s:e], k[s:e], v[s:e], torch.tensor([0, e - s], dtype=torch.int32), e - s, cos[s:e], sin[s:e])
        torch.testing.assert_close(packed[s:e], alone, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("lengths", [[1, 5, 17, 3], [4, 0, 6, 0, 1], [0]])
def test_rotary_packed_restarts_positions(lengths):
    q, _, _, cu, max_len, cos, sin = make_inputs(lengths)
    table_cos, table_sin = rotary_cos_sin(torch.arange(max(max_len, 1)), DH, dtype=torch.float64)
    by_position = ops.rotary_packed(q, table_cos, table_sin, cu)  # tables indexed by position
    by_token = ops.rotary_packed(q, cos, sin)  # per-token tables, as the attention backends get them
    torch.testing.assert_close(by_position, R.apply_rotary(q, cos, sin), rtol=0, atol=1e-12)
    torch.testing.assert_close(by_token, by_position, rtol=0, atol=1e-12)


def test_linear_state_outputs_and_half_precision():
    q, k, v, cu, max_len, cos, sin = make_inputs([3, 0, 9])
    out, kv, s = torch.ops.sciformer.linear_rotary_fwd(q, k, v, cu, cos, sin)
    assert kv.shape == (3, H, DH, DH) and s.shape == (3, H, DH) and not kv[1].any()
    # bf16/fp16 inputs keep fp32 state; the output has the input dtype.
    out16, kv16, _ = torch.ops.sciformer.linear_rotary_fwd(q.half(), k.half(), v.half(), cu, cos.half(), sin.half())
    assert out16.dtype == torch.float16 and kv16.dtype == torch.float32
    torch.testing.assert_close(out16.double(), out, rtol=2e-2, atol=2e-2)


# ---------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("lengths", [[1, 5, 3, 0], [7]])
def test_gradcheck_linear(lengths):
    q, k, v, cu, max_len, cos, sin = make_inputs(lengths, dh=4, grad=True)
    cos, sin = cos.requires_grad_(), sin.requires_grad_()  # also the (rarely used) table gradients
    assert torch.autograd.gradcheck(lambda *a: ops.linear_attention_rotary(*a[:3], cu, max_len, *a[3:]),
                                    (q, k, v, cos, sin))
    assert torch.autograd.gradcheck(lambda *a: ops.linear_attention_rotary(*a, cu, max_len), (q, k, v))


def test_linear_backward_matches_oracle_autograd():
    q, k, v, cu, max_len, cos, sin = make_inputs(LENGTHS[4], grad=True)
    dout = torch.randn(v.shape, dtype=v.dtype)
    ours = torch.autograd.grad(ops.linear_attention_rotary(q, k, v, cu, max_len, cos, sin), (q, k, v), dout)
    oracle = torch.autograd.grad(L.linear_reference_attention(q, k, v, cu, max_len, cos, sin), (q, k, v), dout)
    for a, b in zip(ours, oracle):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("backward", [False, True])
def test_gradcheck_rotary(backward):
    x, _, _, cu, _, _, _ = make_inputs([3, 0, 4], dh=4, grad=True)
    table_cos, table_sin = (t.requires_grad_() for t in rotary_cos_sin(torch.arange(5), 4, dtype=torch.float64))
    fn = torch.ops.sciformer.rotary_packed
    assert torch.autograd.gradcheck(lambda *a: fn(*a, cu, backward), (x, table_cos, table_sin))


def test_gradcheck_varlen():
    q, k, v, cu, max_len, cos, sin = make_inputs([3, 0, 5, 1], dh=4, grad=True)
    assert torch.autograd.gradcheck(lambda *a: ops.varlen_attention(*a, cu, max_len, cos, sin), (q, k, v))


# ---------------------------------------------------------------------------- op registration checks


def _opcheck_cases():
    q, k, v, cu, max_len, cos, sin = make_inputs([3, 0, 5, 1], dh=4, grad=True)
    out, kv, s = torch.ops.sciformer.linear_rotary_fwd(q, k, v, cu, cos, sin)
    dout = torch.randn_like(out)
    x = q.detach().requires_grad_()
    qd, kd, vd = q.detach(), k.detach(), v.detach()  # the backward ops have no double backward
    return {
        "linear_fwd": (torch.ops.sciformer.linear_rotary_fwd.default, (q, k, v, cu, cos, sin)),
        "linear_fwd_norot": (torch.ops.sciformer.linear_rotary_fwd.default, (q, k, v, cu, None, None)),
        "linear_bwd": (torch.ops.sciformer.linear_rotary_bwd.default,
                       (dout, qd, kd, vd, cu, cos, sin, out.detach(), kv, s, True)),
        "rotary": (torch.ops.sciformer.rotary_packed.default, (x, cos, sin, None, False)),
        "rotary_cu": (torch.ops.sciformer.rotary_packed.default, (x, cos[:5], sin[:5], cu, True)),
        "varlen": (torch.ops.sciformer.varlen_attention.default, (q, k, v, cu, max_len)),
        "varlen_bwd": (torch.ops.sciformer.varlen_attention_bwd.default, (dout, qd, kd, vd, cu, max_len)),
    }


@pytest.mark.parametrize("case", list(_opcheck_cases()))
def test_opcheck(case):
    op, args = _opcheck_cases()[case]
    torch.library.opcheck(op, args)


def test_torch_compile_traces_ops():
    """fullgraph tracing through fake impls + autograd (aot_eager: no C++ compiler needed)."""
    q, k, v, cu, max_len, cos, sin = make_inputs([3, 6, 1], grad=True)

    def step(q, k, v):
        a = ops.linear_attention_rotary(q, k, v, cu, max_len, cos, sin)
        b = ops.varlen_attention(q, k, v, cu, max_len, cos, sin)
        return (a * b).sum()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(compiled(q, k, v), (q, k, v))
    want = torch.autograd.grad(step(q, k, v), (q, k, v))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.fixture
def kernel_backends():
    before = A.available_attention()
    ops.register_kernel_backends()
    yield
    for name in ("linear_fused", "linear_op", "varlen"):  # leave the registry as this test found it
        if name in before:
            A.register_attention(before[name])
        else:
            A.unregister_attention(name)


def test_backends_register_and_fall_back_on_cpu(kernel_backends, caplog):
    cpu = torch.device("cpu")
    assert A.resolve_attention("linear_op", cpu).name == "linear_op"
    assert A.resolve_attention("varlen", cpu).name == "varlen"
    R._WARNED.discard(("linear_fused", "cpu"))
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("INFO", logger="sciformer.attention"):
        warnings.simplefilter("always")
        assert A.resolve_attention("linear_fused", cpu).name == "linear"  # CUDA-only; vectorized fallback
    # its declared CPU path is the design (the molecules default on GPU): logged, not warned
    assert not [w for w in caught if "linear_fused" in str(w.message)]
    assert "declared fallback 'linear'" in caplog.text
    mha = A.MultiHeadAttention(16, 2, attention="linear_op").double()
    x = torch.randn(9, 16, dtype=torch.float64, requires_grad=True)
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    mha(x, cu, 5).sum().backward()
    assert torch.isfinite(x.grad).all()


# ============================================================================ Triton, interpreter mode

INTERP_CASES = {  # name -> (lengths, heads, head dim, dtype)
    "fp32_d16_edge": ([1, 5, 17, 0, 3], 2, 16, "float32"),
    "fp32_d32_long": ([40, 3, 1], 1, 32, "float32"),
    "fp32_d24_not_pow2": ([6, 0, 9], 1, 24, "float32"),
    "fp16_d16": ([5, 12], 2, 16, "float16"),
}


def _interpreter_checks() -> dict:
    """Runs in the subprocess (TRITON_INTERPRET=1): max |triton - reference| per check."""
    from core.attention.kernels import triton_linear as TL
    from core.attention.kernels import triton_rotary as TR

    assert TL.LINEAR_EPS == L.LINEAR_EPS
    errors = {}
    for name, (lengths, heads, dh, dtype) in INTERP_CASES.items():
        dt = getattr(torch, dtype)
        q, k, v, cu, max_len, cos, sin = make_inputs(lengths, heads, dh, torch.float32, seed=1)
        q, k, v, cos, sin = (t.to(dt) for t in (q, k, v, cos, sin))
        for rot in (True, False):
            cs = (cos, sin) if rot else (None, None)
            out, kv, s = TL.linear_fwd(q, k, v, cu, *cs)
            ref = ops.linear_fwd_reference(q, k, v, cu, *cs)
            errors[f"{name}_rot{int(rot)}_fwd"] = max((a.float() - b.float()).abs().max().item()
                                                      for a, b in zip((out, kv, s), ref)) if q.numel() else 0.0
            dout = torch.randn_like(out)
            got = TL.linear_bwd(dout, q, k, v, cu, *cs, *ref)
            want = ops.linear_bwd_reference(dout, q, k, v, cu, *cs, *ref)[:3]
            errors[f"{name}_rot{int(rot)}_bwd"] = max((a.float() - b.float()).abs().max().item()
                                                      for a, b in zip(got, want))
        table_cos, table_sin = rotary_cos_sin(torch.arange(max_len), dh, dtype=dt)
        for cu_, tables in ((cu, (table_cos, table_sin)), (None, (cos, sin))):
            for backward in (False, True):
                got = TR.rotary(q, *tables, cu_, backward)
                want = ops.rotary_reference(q, *tables, cu_, backward)
                errors[f"{name}_rotary_cu{int(cu_ is not None)}_bwd{int(backward)}"] = (
                    (got.float() - want.float()).abs().max().item())
    # The full op path (custom op + autograd) routed through the kernels (SCIFORMER_TRITON_CPU=1).
    q, k, v, cu, max_len, cos, sin = make_inputs([4, 0, 11, 1], 2, 16, torch.float32, seed=2, grad=True)
    ours = ops.linear_attention_rotary(q, k, v, cu, max_len, cos, sin)
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    oracle = L.linear_reference_attention(q, k, v, cu, max_len, cos, sin)
    want = torch.autograd.grad(oracle.square().sum(), (q, k, v))
    errors["op_path_fwd_bwd"] = max((a - b).abs().max().item() for a, b in zip((ours, *grads), (oracle, *want)))
    return errors


def _tolerance(check: str) -> float:
    return 2e-2 if "fp16" in check else 1e-4


@pytest.fixture(scope="module")
def interpreter_results():
    env = dict(os.environ, TRITON_INTERPRET="1", SCIFORMER_TRITON_CPU="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, __file__, "--interpreter"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_triton
@pytest.mark.parametrize("case", list(INTERP_CASES) + ["op_path"])
def test_triton_interpreter(interpreter_results, case):
    checks = {k: v for k, v in interpreter_results.items() if k.startswith(case)}
    assert checks, f"no interpreter results for {case}"
    bad = {k: v for k, v in checks.items() if not v <= _tolerance(k)}  # `not <=` also catches NaN
    assert not bad, f"triton (interpreter) vs reference, max abs error: {bad}"


# ============================================================================ Triton, compiled for Hopper


def _hopper_specs():
    if not HAS_TRITON:
        return []
    from core.attention.kernels import triton_linear, triton_rotary

    return [*triton_linear.compile_specs(), *triton_rotary.compile_specs()]


_SPECS = _hopper_specs()


@needs_triton
@pytest.mark.parametrize("index", range(len(_SPECS)), ids=[s[0] for s in _SPECS])
def test_triton_compiles_for_hopper(index):
    import triton

    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as err:  # pragma: no cover - depends on the triton version
        pytest.skip(f"this triton has no ahead-of-time compile API: {err}")
    _, kernel, signature, constexprs, options = _SPECS[index]
    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
                              target=GPUTarget("cuda", 90, 32), options=options)
    assert "cubin" in compiled.asm


@needs_triton
def test_compile_specs_cover_every_kernel():
    from core.attention.kernels import triton_linear, triton_rotary

    kernels = {s[1] for s in _SPECS}
    expected = {triton_linear._state_kernel, triton_linear._out_kernel, triton_linear._bwd_q_kernel,
                triton_linear._bwd_kv_kernel, triton_rotary._rotary_kernel}
    assert expected <= kernels


if __name__ == "__main__" and sys.argv[1:] == ["--interpreter"]:
    assert os.environ.get("TRITON_INTERPRET") == "1"
    print(json.dumps(_interpreter_checks()))

