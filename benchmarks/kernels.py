"""Kernel benchmark (GPU): fused linear attention + rotary and packed varlen softmax attention.

1. Measures this GPU's roofline: a big bf16 matmul (TFLOP/s) and a big copy (GB/s).
2. Checks the Triton kernels against the PyTorch references on random bf16 inputs (forward and
   gradients); stops with an error if they disagree.
3. Times (triton.testing.do_bench, median) forward and forward+backward for one sequence of
   T = 128..16k tokens, for packed SMILES-like batches (mean fill 0.6) and for two batches big enough to
   fill the GPU (32 x 4k, 16 x 16k tokens), side by side with PyTorch SDPA on the padded batch and
   flash-linear-attention's chunk_linear_attn where importable (causal: an approximate peer). With
   --cudagraph every call is also timed replayed from a CUDA graph (no host launch cost); a method whose
   call syncs with the host cannot be captured and gets NaN there.

Rows {task, dataset, split, method, metric, value, machine} go to results/kernels/benchmark.json (and
with --commit to benchmarks/results/kernels-<machine>.json). Metrics: ms, tflops, gbps,
roofline_fraction (the larger of the compute and memory fractions: the bound that applies),
speedup_vs_fla, speedup_vs_padded (and ms_cudagraph, roofline_fraction_cudagraph). Without CUDA it
prints a message and exits 0. fla is not in the project's extras; on the GPU machine it travels as the
fla-core wheel (pure Python + Triton, needs einops).

    python -m benchmarks.kernels            # full run (under 2.5 min on an H200, 2026-12-04, without the
                                            # two large batches and T=128, added after that run)
    python -m benchmarks.kernels --quick    # T up to 4k, fewer batches
"""
from __future__ import annotations

import argparse
import math

import torch

from benchmarks.common import ROOT
from core.attention import linear as attention_linear
from core.attention import softmax as attention_softmax
from core.io import write_json
from core.metrics import machine_label
from core.packing import lengths_to_cu_seqlens, positions_from_cu_seqlens, unpack
from core.rotary import rotary_cos_sin

HEADS, DH = 8, 64
DTYPE = torch.bfloat16


def bench(fn) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=100, return_mode="median")  # ms


def bench_graph(fn) -> float:
    """Median ms of fn replayed from a CUDA graph: the GPU time without the host's per-call launch cost."""
    from triton.testing import do_bench_cudagraph

    return do_bench_cudagraph(fn, rep=100, return_mode="median")


def roofline() -> tuple[float, float]:
    """(bf16 GEMM TFLOP/s, copy GB/s) measured here: the peaks the kernels are compared with."""
    n = 8192
    a, b = torch.randn(n, n, device="cuda", dtype=DTYPE), torch.randn(n, n, device="cuda", dtype=DTYPE)
    tflops = 2 * n**3 / bench(lambda: a @ b) / 1e9
    x = torch.empty(1 << 29, device="cuda", dtype=torch.uint8)  # 512 MiB, far beyond L2
    y = torch.empty_like(x)
    gbps = 2 * x.numel() / bench(lambda: y.copy_(x)) / 1e6  # read + write
    return tflops, gbps


def make_batch(lengths, seed=0, grad=True):
    g = torch.Generator(device="cuda").manual_seed(seed)
    cu = lengths_to_cu_seqlens(torch.tensor(lengths)).cuda()
    total = int(sum(lengths))
    q, k, v = (torch.randn(total, HEADS, DH, device="cuda", dtype=DTYPE, generator=g).requires_grad_(grad)
               for _ in range(3))
    cos, sin = rotary_cos_sin(positions_from_cu_seqlens(cu, total), DH, dtype=DTYPE, device="cuda")
    return q, k, v, cu, max(lengths), cos, sin


def smiles_lengths(batch: int, max_len: int, fill: float = 0.6, seed: int = 0) -> list[int]:
    """Lengths like a SMILES batch: roughly normal around fill * max_len, clipped to [4, max_len]."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randn(batch, generator=g) * 0.2 * max_len + fill * max_len
    return lengths.round().clamp(4, max_len).to(torch.int64).tolist()


def check_correctness(ops) -> None:
    q, k, v, cu, max_len, cos, sin = make_batch(smiles_lengths(64, 128) + [1, 0, 1000], seed=1)
    dout = torch.randn_like(v)
    for name, fast, ref in (
        ("linear", ops.linear_attention_rotary, attention_linear.linear_attention),
        ("varlen", ops.varlen_attention, attention_softmax.sdpa_attention),
    ):
        out = fast(q, k, v, cu, max_len, cos, sin)
        grads = torch.autograd.grad(out, (q, k, v), dout)
        # The reference in fp32 from the same bf16 inputs: the error is the kernels' own rounding.
        leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
        want = ref(*leaves, cu, max_len, cos.float(), sin.float())
        want_grads = torch.autograd.grad(want, leaves, dout.float())
        for label, a, b in zip(("out", "dq", "dk", "dv"), (out, *grads), (want, *want_grads)):
            err = ((a.float() - b).norm() / b.norm().clamp_min(1e-12)).item()
            print(f"check {name:6s} {label}: relative L2 error {err:.2e}")
            if not err < 2e-2:
                raise SystemExit(f"{name} {label}: kernel disagrees with the reference ({err:.2e})")


def fla_linear():
    """fla's chunked linear attention (causal: an approximate peer, labelled as such), or None."""
    try:
        from fla.ops.linear_attn import chunk_linear_attn
    except Exception:
        return None

    def run(q, k, v, cu, max_len, cos, sin):
        fq, fk = (torch.nn.functional.elu(t) + 1 for t in (q, k))
        out = chunk_linear_attn(fq[None], fk[None], v[None], normalize=True, cu_seqlens=cu.long())
        return (out[0] if isinstance(out, tuple) else out)[0]

    try:  # its API changes between releases: use it only if a tiny call works
        run(*make_batch([5, 16]))
    except Exception as err:
        print(f"fla is installed but chunk_linear_attn failed ({type(err).__name__}: {err}); skipping it")
        return None
    return run


def sdpa_padded(q, k, v, cu, max_len, cos, sin):
    """PyTorch SDPA on the zero-padded batch with a key-padding mask (what a padded model runs)."""
    from core.rotary import apply_rotary

    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    (qb, mask), (kb, _), (vb, _) = (unpack(t, cu, max_len) for t in (q, k, v))
    keys = mask[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (qb, kb, vb)),
                                                           attn_mask=keys)
    return out.transpose(1, 2)[mask]


def cost(task: str, lengths: list[int]) -> tuple[float, float]:
    """(FLOPs, bytes) of one call; fwd+bwd counts both passes. Elementwise work is not counted."""
    total, elt = sum(lengths), 2
    if task.startswith("linear"):
        flops = 4 * total * HEADS * DH * DH  # rk^T v and rq @ KV
        nbytes = (4 * total * HEADS * DH + 2 * total * DH) * elt  # q, k, v, out, cos, sin
        if task.endswith("fwd_bwd"):
            flops *= 3  # backward: 4 more [T, D] x [D, Dv]-sized dots
            nbytes += (8 * total * HEADS * DH + 2 * total * DH) * elt  # q,k,v,out,dout in; dq,dk,dv out
    else:
        flops = 4 * sum(n * n for n in lengths) * HEADS * DH
        nbytes = (4 * total * HEADS * DH) * elt
        if task.endswith("fwd_bwd"):
            flops *= 3.5  # flash convention: backward = 2.5x forward
            nbytes += 8 * total * HEADS * DH * elt
    return flops, nbytes


def measure(fn, args, task: str, timer=bench):
    q, k, v = args[:3]
    if task.endswith("fwd_bwd"):
        dout = torch.randn(q.shape, device="cuda", dtype=DTYPE)

        def call():
            out = fn(*args)
            torch.autograd.grad(out, (q, k, v), dout)
    else:
        def call():
            with torch.no_grad():
                fn(*args)
    try:
        return timer(call)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return math.nan
    except RuntimeError as err:  # graph capture refuses a host sync (e.g. boolean-mask indexing)
        if timer is bench:
            raise
        print(f"  (no CUDA-graph timing: {str(err).splitlines()[0][:100]})")
        torch.cuda.synchronize()
        return math.nan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--commit", action="store_true", help="also write benchmarks/results/kernels-<machine>.json")
    parser.add_argument("--cudagraph", action="store_true",
                        help="also time every call replayed from a CUDA graph (metric ms_cudagraph): the GPU time "
                             "without the host's launch cost, which dominates small calls")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/kernels.py: no CUDA device here; the kernel benchmark needs a GPU (nothing to do).")
        return 0
    try:
        import triton  # noqa: F401
    except ImportError:
        print("benchmarks/kernels.py: triton is not installed (pip install '.[gpu]').")
        return 0
    from core.attention.kernels import ops

    machine = machine_label()
    peak_tflops, peak_gbps = roofline()
    print(f"{machine}: measured roofline {peak_tflops:.0f} TFLOP/s bf16 GEMM, {peak_gbps:.0f} GB/s copy")
    check_correctness(ops)

    # T=128: almost no work, so its time is the fixed cost of one call (launches, dispatch, autograd)
    singles = [1024, 2048, 4096] if args.quick else [128, 1024, 2048, 4096, 8192, 16384]
    datasets = {f"single_T{t}": [t] for t in singles}
    for batch, max_len in ([(256, 128)] if args.quick else [(256, 128), (1024, 128), (128, 512)]):
        datasets[f"smiles_B{batch}_L{max_len}_fill0.6"] = smiles_lengths(batch, max_len)
    if not args.quick:  # enough tokens (131k, 262k) to fill the GPU, where a roofline fraction means something
        datasets.update({f"batch_B{b}_T{t}": [t] * b for b, t in ((32, 4096), (16, 16384))})
    fla = fla_linear()
    methods = {
        "linear": {"linear_fused": ops.linear_attention_rotary, "linear_torch": attention_linear.linear_attention,
                   **({"fla_chunk_linear_attn_causal": fla} if fla else {}), "sdpa_padded": sdpa_padded},
        "varlen": {"varlen": ops.varlen_attention, "sdpa_padded": sdpa_padded},
    }
    rows, split = [], f"bf16_H{HEADS}_D{DH}"
    for dataset, lengths in datasets.items():
        inputs = make_batch(lengths)
        for family, impls in methods.items():
            if family == "varlen" and max(lengths) > 4096:
                continue  # quadratic attention on one long sequence is not what the varlen path is for
            for mode in ("fwd", "fwd_bwd"):
                task = f"{family}_{mode}"
                times = {m: measure(fn, inputs, task) for m, fn in impls.items()}
                flops, nbytes = cost(task, lengths)
                ours = "linear_fused" if family == "linear" else "varlen"
                for method, ms in times.items():
                    tflops, gbps = flops / ms / 1e9, nbytes / ms / 1e6
                    metrics = {"ms": ms, "tflops": tflops, "gbps": gbps,
                               "roofline_fraction": max(tflops / peak_tflops, gbps / peak_gbps)}
                    if args.cudagraph:
                        graph_ms = measure(impls[method], inputs, task, timer=bench_graph)
                        metrics["ms_cudagraph"] = graph_ms
                        metrics["roofline_fraction_cudagraph"] = max(flops / graph_ms / 1e9 / peak_tflops,
                                                                     nbytes / graph_ms / 1e6 / peak_gbps)
                    if method == ours:
                        if "sdpa_padded" in times:
                            metrics["speedup_vs_padded"] = times["sdpa_padded"] / ms
                        fla_ms = times.get("fla_chunk_linear_attn_causal")
                        if fla_ms is not None:
                            metrics["speedup_vs_fla"] = fla_ms / ms
                    for metric, value in metrics.items():
                        rows.append(dict(task=task, dataset=dataset, split=split, method=method, metric=metric,
                                         value=float(value), machine=machine))
                    print(f"{task:15s} {dataset:28s} {method:30s} {ms:8.3f} ms {tflops:7.1f} TFLOP/s "
                          f"{gbps:7.0f} GB/s  roofline {metrics['roofline_fraction']:.2f}")
        del inputs
        torch.cuda.empty_cache()
    rows += [dict(task="roofline", dataset="-", split="bf16", method="matmul_8192", metric="tflops",
                  value=peak_tflops, machine=machine),
             dict(task="roofline", dataset="-", split="uint8", method="copy_512MiB", metric="gbps",
                  value=peak_gbps, machine=machine)]
    write_json(ROOT / "results" / "kernels" / "benchmark.json", rows)
    if args.commit:
        write_json(ROOT / "benchmarks" / "results" / f"kernels-{machine}.json", rows)
    print(f"wrote {len(rows)} rows to results/kernels/benchmark.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
