"""The differential-attention backend (Differential Transformer) against float64 oracles, plus gradcheck."""
from __future__ import annotations

import math

import pytest
import torch
from test_attention import DH, H, make_qkv  # tests/ is on sys.path (rootdir-less test modules): same inputs

from core.attention import available_attention, resolve_attention
from core.attention import differential as A
from core.attention import softmax as S
from core.encoder import Encoder, EncoderConfig
from core.rotary import apply_rotary, rotary_cos_sin

LENGTHS = [[1, 5, 17, 3], [4, 0, 6, 0, 1], [0], [7], [6, 6, 6], [30, 1, 1, 1, 1, 0]]


def naive_diff(q, k, v, cu, lam):
    """Independent formula: per sequence, per head, half-width rotary built from positions directly."""
    d = DH // 2
    outs = []
    for b in range(cu.numel() - 1):
        s, e = int(cu[b]), int(cu[b + 1])
        if e == s:
            continue
        cos, sin = rotary_cos_sin(torch.arange(e - s), d, dtype=q.dtype)
        q1, q2 = (apply_rotary(t, cos, sin) for t in q[s:e].chunk(2, -1))
        k1, k2 = (apply_rotary(t, cos, sin) for t in k[s:e].chunk(2, -1))
        out = torch.empty(e - s, H, DH, dtype=q.dtype)
        for h in range(H):
            m1 = torch.softmax(q1[:, h] @ k1[:, h].T / math.sqrt(d), -1)
            m2 = torch.softmax(q2[:, h] @ k2[:, h].T / math.sqrt(d), -1)
            o = (m1 - lam * m2) @ v[s:e, h]
            out[:, h] = o / torch.sqrt((o ** 2).mean(-1, keepdim=True) + A.DIFF_NORM_EPS) * (1 - A.DIFF_LAMBDA_INIT)
        outs.append(out)
    return torch.cat(outs) if outs else torch.zeros_like(v)


def test_registered_as_its_own_kind():
    backends = available_attention()
    assert backends["diff"].kind == backends["diff_reference"].kind == "differential"
    assert resolve_attention("diff", "cpu").name == "diff"


@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("rotary", [True, False])
@pytest.mark.parametrize("name", ["diff", "diff_reference"])
def test_matches_naive_formula_float64(lengths, rotary, name):
    q, k, v, cu, max_len, cos, sin = make_qkv(lengths)
    lam = torch.tensor(0.37, dtype=torch.float64)
    got = available_attention()[name].fn(q, k, v, cu, max_len, *((cos, sin) if rotary else (None, None)), lam=lam)
    if rotary:
        want = naive_diff(q, k, v, cu, lam)
    else:  # without rotary the naive formula is the same with identity rotation
        c1 = torch.ones(q.shape[0], DH, dtype=q.dtype)
        want = A.differential_reference_attention(q, k, v, cu, max_len, c1, torch.zeros_like(c1), lam=lam)
    assert got.shape == v.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_lambda_zero_is_softmax_attention_of_the_first_half():
    """With lambda = 0 only the first map remains: normalized softmax attention (core oracle) on Q1, K1."""
    q, k, v, cu, max_len, _, _ = make_qkv([5, 9, 2])
    got = A.differential_attention(q, k, v, cu, max_len, lam=0.0)
    plain = S.reference_attention(q[..., : DH // 2], k[..., : DH // 2], v, cu, max_len)
    want = plain / torch.sqrt(plain.pow(2).mean(-1, keepdim=True) + A.DIFF_NORM_EPS) * (1 - A.DIFF_LAMBDA_INIT)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_gradcheck_including_lambda():
    q, k, v, cu, max_len, cos, sin = make_qkv([3, 0, 4])
    lam = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    for t in (q, k, v):
        t.requires_grad_(True)
    fn = lambda q, k, v, lam: A.differential_attention(q, k, v, cu, max_len, cos, sin, lam=lam)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v, lam))


def test_sequences_do_not_interact():
    q, k, v, cu, max_len, cos, sin = make_qkv([4, 6])
    base = A.differential_attention(q, k, v, cu, max_len, cos, sin)
    k2, v2 = k.clone(), v.clone()
    k2[4:] += 3.0
    v2[4:] -= 2.0
    moved = A.differential_attention(q, k2, v2, cu, max_len, cos, sin)
    torch.testing.assert_close(moved[:4], base[:4])
    assert not torch.allclose(moved[4:], base[4:])


def test_head_dim_must_split_for_rotary():
    q = torch.randn(3, 1, 6, dtype=torch.float64)
    cos, sin = rotary_cos_sin(torch.arange(3), 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="divisible by 2 \\(by 4 with rotary\\)"):
        A.differential_attention(q, q, q, torch.tensor([0, 3], dtype=torch.int32), 3, cos, sin)


def test_encoder_learns_lambda_and_matches_reference_backend():
    """In an encoder, lambda is a parameter of each attention module, gets gradients, and the fast and
    reference backends give the same output for the same weights."""
    torch.manual_seed(0)
    cfg = EncoderConfig(d_model=16, n_heads=2, n_layers=2, d_ff=32, dropout=0.0, attention="diff")
    fast = Encoder(cfg).double()
    ref = Encoder(EncoderConfig(**{**cfg.to_dict(), "attention": "diff_reference"})).double()
    ref.load_state_dict(fast.state_dict())
    cu = torch.tensor([0, 5, 12], dtype=torch.int32)
    x = torch.randn(12, 16, dtype=torch.float64)
    out = fast(x, cu, 7)
    torch.testing.assert_close(out, ref(x, cu, 7))
    out.pow(2).sum().backward()
    grads = [blk.attn.backend_params.vectors.grad for blk in fast.blocks]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    lam = fast.blocks[0].attn.backend_params()["lam"].detach()
    assert abs(float(lam) - A.DIFF_LAMBDA_INIT) < 0.2  # starts near lambda_init (vectors ~ N(0, 0.1))
    # plain softmax modules carry no lambda
    assert Encoder(EncoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32)).blocks[0].attn.backend_params is None
