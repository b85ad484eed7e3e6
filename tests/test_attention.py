"""Attention backends, packing, rotary and the encoder on the packed layout (CPU, float64 oracles)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from core import attention as A
from core.attention import linear as L
from core.attention import softmax as S
from core.encoder import Encoder, EncoderConfig, RegressionHead, TokenEncoder, TokenHead
from core.packing import (
    lengths_to_cu_seqlens,
    pack,
    pack_token_lists,
    positions_from_cu_seqlens,
    segment_ids,
    segment_mean,
    unpack,
)
from core.rotary import apply_rotary, rotary_cos_sin

H, DH = 2, 8
LENGTHS = [[1, 5, 17, 3], [4, 0, 6, 0, 1], [0], [7], [30, 1, 1, 1, 1, 1, 1, 1, 1, 0]]  # last: very skewed
REFERENCE = {"softmax": "reference", "linear": "linear_reference"}


def make_qkv(lengths, heads=H, dh=DH, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    cu = lengths_to_cu_seqlens(torch.tensor(lengths))
    total = int(cu[-1])
    q, k, v = (torch.randn(total, heads, dh, dtype=dtype) for _ in range(3))
    cos, sin = rotary_cos_sin(positions_from_cu_seqlens(cu, total), dh, dtype=dtype)
    return q, k, v, cu, max(lengths), cos, sin


def cpu_backends(include_references: bool = True):
    return [b for b in A.available_attention().values() if b.runs_on(torch.device("cpu")) and b.kind in REFERENCE
            and (include_references or b.name not in REFERENCE.values())]


# ----------------------------------------------------------------------------- packing


def test_pack_unpack_roundtrip_and_helpers():
    torch.manual_seed(0)
    lengths = torch.tensor([3, 0, 2, 5])
    mask = torch.arange(5)[None] < lengths[:, None]
    padded = torch.randn(4, 5, 3) * mask[..., None]
    packed, cu, max_len = pack(padded, mask)
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 3, 3, 5, 10] and max_len == 5
    back, back_mask = unpack(packed, cu, max_len)
    assert torch.equal(back, padded) and torch.equal(back_mask, mask)
    assert segment_ids(cu, 10).tolist() == [0, 0, 0, 2, 2, 3, 3, 3, 3, 3]
    assert positions_from_cu_seqlens(cu, 10).tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3, 4]
    mean = segment_mean(packed, cu)
    assert torch.allclose(mean[0], padded[0, :3].mean(0)) and torch.equal(mean[1], torch.zeros(3))
    assert not torch.isnan(mean).any()
    ids, cu2, m2 = pack_token_lists([[5, 6], [], [7]])
    assert ids.tolist() == [5, 6, 7] and cu2.tolist() == [0, 2, 2, 3] and m2 == 2


def test_pack_keeps_order_for_non_prefix_masks():
    padded = torch.arange(8).view(2, 4)
    mask = torch.tensor([[False, True, False, True], [True, True, False, False]])
    packed, cu, _ = pack(padded, mask)
    assert packed.tolist() == [1, 3, 4, 5] and cu.tolist() == [0, 2, 4]


# ----------------------------------------------------------------------------- rotary


def test_rotary_properties():
    torch.manual_seed(0)
    dh = 16
    pos = torch.arange(40)
    cos, sin = rotary_cos_sin(pos, dh, dtype=torch.float64)
    x = torch.randn(40, 3, dh, dtype=torch.float64)
    # Rotation preserves the norm of every head vector.
    assert torch.allclose(apply_rotary(x, cos, sin).norm(dim=-1), x.norm(dim=-1))
    # q.k after rotary depends only on the position difference.
    q, k = torch.randn(1, 1, dh, dtype=torch.float64), torch.randn(1, 1, dh, dtype=torch.float64)

    def score(m, n):
        cq, sq = rotary_cos_sin(torch.tensor([m]), dh, dtype=torch.float64)
        ck, sk = rotary_cos_sin(torch.tensor([n]), dh, dtype=torch.float64)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    assert torch.allclose(score(3, 1), score(12, 10)) and torch.allclose(score(0, 7), score(20, 27))
    assert not torch.allclose(score(3, 1), score(3, 2))
    # Positions restart per sequence on the packed layout.
    cu = lengths_to_cu_seqlens(torch.tensor([3, 0, 4]))
    assert positions_from_cu_seqlens(cu, 7).tolist() == [0, 1, 2, 0, 1, 2, 3]


@pytest.mark.parametrize("axes", [2, 3])
def test_rotary_several_axes_depends_on_per_axis_offsets(axes):
    torch.manual_seed(0)
    dh = 16
    q, k = torch.randn(1, 1, dh, dtype=torch.float64), torch.randn(1, 1, dh, dtype=torch.float64)

    def score(m, n):
        cq, sq = rotary_cos_sin(torch.tensor([m], dtype=torch.float64), dh, dtype=torch.float64)
        ck, sk = rotary_cos_sin(torch.tensor([n], dtype=torch.float64), dh, dtype=torch.float64)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    a, b = [3.0, 1.0, 2.0][:axes], [1.0, 5.0, 0.5][:axes]
    shift = [10.0, -4.0, 7.25][:axes]
    assert torch.allclose(score(a, b), score([x + s for x, s in zip(a, shift)], [x + s for x, s in zip(b, shift)]))
    for axis in range(axes):  # moving one token along any single axis changes the score
        moved = list(a)
        moved[axis] += 1.0
        assert not torch.allclose(score(a, b), score(moved, b))
    # one axis given as [T, 1] is plain 1-D rotary
    pos = torch.arange(7)
    one = rotary_cos_sin(pos[:, None], dh, dtype=torch.float64)
    assert all(torch.equal(x, y) for x, y in zip(one, rotary_cos_sin(pos, dh, dtype=torch.float64)))


def test_encoder_takes_positions_of_several_axes():
    from core.encoder import Encoder, EncoderConfig
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0)).eval()
    x = torch.randn(6, 16)
    cu = lengths_to_cu_seqlens(torch.tensor([6]))
    grid = torch.tensor([[r, c] for r in range(2) for c in range(3)])
    out = enc(x, cu, 6, positions=grid)
    # permuting tokens together with their positions permutes the output: position comes from `positions`
    perm = torch.tensor([5, 3, 1, 0, 2, 4])
    assert torch.allclose(enc(x[perm], cu, 6, positions=grid[perm]), out[perm], atol=1e-5)
    assert not torch.allclose(out, enc(x, cu, 6), atol=1e-3)
    with pytest.raises(ValueError, match="positions must be"):
        enc(x, cu, 6, positions=torch.zeros(6, 2, 2))


def test_rotary_odd_dim_raises():
    with pytest.raises(ValueError, match="head_dim=5"):
        rotary_cos_sin(torch.arange(3), 5)
    with pytest.raises(ValueError, match="head_dim"):
        A.MultiHeadAttention(10, 2, rotary=True)


# ----------------------------------------------------------------------------- backends vs oracles


@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("rotary", [False, True])
def test_backends_match_reference(lengths, rotary):
    q, k, v, cu, max_len, cos, sin = make_qkv(lengths)
    cs = (cos, sin) if rotary else (None, None)
    backends = cpu_backends(include_references=False)  # an oracle compared with itself proves nothing
    assert {"sdpa", "linear", "linear_op", "varlen"} <= {b.name for b in backends}
    for backend in backends:
        oracle = A.available_attention()[REFERENCE[backend.kind]]
        out = backend.fn(q, k, v, cu, max_len, *cs)
        expected = oracle.fn(q, k, v, cu, max_len, *cs)
        assert out.shape == q.shape and not torch.isnan(out).any(), backend.name
        torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-8, msg=backend.name)


@pytest.mark.parametrize("impl", [S.padded_sdpa, S._sdpa_block_diagonal])
def test_sdpa_layouts_match_reference(impl):
    for lengths in LENGTHS + [[3, 3, 3]]:
        q, k, v, cu, max_len, cos, sin = make_qkv(lengths)
        torch.testing.assert_close(impl(q, k, v, cu, max_len), S.reference_attention(q, k, v, cu, max_len))


def test_linear_numerator_paths_agree():
    # linear_attention picks the padded or the segment-sum numerator by padding overhead; test both.
    for lengths in LENGTHS:
        q, k, v, cu, max_len, _, _ = make_qkv(lengths)
        seg = segment_ids(cu, q.shape[0])
        torch.testing.assert_close(
            L.gather_matvec(q, L.segment_outer(k, v, seg, cu.numel() - 1), seg),
            L._numerator_padded(q, k, v, cu, max_len),
        )
    q, k, v, cu, _, _, _ = make_qkv([2, 0, 3], heads=1, dh=4)
    seg = segment_ids(cu, 5)
    inputs = tuple(t.clone().requires_grad_(True) for t in (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: L.gather_matvec(a, L.segment_outer(b, c, seg, 3), seg), inputs)


def test_reference_matches_textbook_softmax():
    q, k, v, cu, max_len, _, _ = make_qkv([6])
    scores = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(DH)
    expected = torch.einsum("hij,jhd->ihd", scores.softmax(-1), v)
    torch.testing.assert_close(S.reference_attention(q, k, v, cu, max_len), expected)


@pytest.mark.parametrize("name", ["reference", "sdpa", "linear", "linear_reference"])
def test_packed_equals_padded(name):
    lengths = [1, 5, 17, 0, 3]
    q, k, v, cu, max_len, cos, sin = make_qkv(lengths)
    fn = A.available_attention()[name].fn
    packed_out = fn(q, k, v, cu, max_len, cos, sin)
    (qp, mask), (kp, _), (vp, _), (cp, _), (sp, _) = (unpack(t, cu, max_len) for t in (q, k, v, cos, sin))
    padded_out = A.padded_attention(name, qp, kp, vp, mask, cp, sp)
    assert torch.equal(padded_out[~mask], torch.zeros_like(padded_out[~mask]))
    for b, (s, e) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
        torch.testing.assert_close(padded_out[b, : e - s], packed_out[s:e])
        # Each sequence alone gives the same result as inside the batch.
        one = torch.tensor([0, e - s], dtype=torch.int32)
        alone = fn(q[s:e], k[s:e], v[s:e], one, e - s, cos[s:e], sin[s:e])
        torch.testing.assert_close(alone, packed_out[s:e])


@pytest.mark.parametrize("name", ["reference", "sdpa", "linear", "linear_reference"])
def test_no_cross_sequence_leakage(name):
    q, k, v, cu, max_len, cos, sin = make_qkv([4, 9, 2])
    fn = A.available_attention()[name].fn
    out = fn(q, k, v, cu, max_len, cos, sin)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[:4] += 5.0 * torch.randn_like(t[:4])  # change sequence 0
        t[13:] -= 3.0  # and sequence 2
    out2 = fn(q2, k2, v2, cu, max_len, cos, sin)
    torch.testing.assert_close(out2[4:13], out[4:13])
    assert not torch.allclose(out2[:4], out[:4])


@pytest.mark.parametrize("name", ["reference", "sdpa", "linear"])
def test_gradcheck(name):
    q, k, v, cu, max_len, cos, sin = make_qkv([2, 0, 3], heads=2, dh=4)
    fn = A.available_attention()[name].fn
    inputs = tuple(t.clone().requires_grad_(True) for t in (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: fn(a, b, c, cu, max_len, cos, sin), inputs)


def test_gradcheck_sdpa_padded_layout_with_empty_sequence():
    # The padded SDPA path masks whole rows for empty sequences; its backward must stay finite.
    q, k, v, cu, max_len, _, _ = make_qkv([2, 0, 3], heads=1, dh=4)
    inputs = tuple(t.clone().requires_grad_(True) for t in (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: S.padded_sdpa(a, b, c, cu, max_len), inputs)


def test_all_empty_batch():
    q, k, v, cu, max_len, cos, sin = make_qkv([0, 0])
    for backend in cpu_backends():
        assert backend.fn(q, k, v, cu, max_len, cos, sin).shape == (0, H, DH)


# ----------------------------------------------------------------------------- registry


def test_unknown_backend_lists_names():
    with pytest.raises(ValueError) as err:
        A.resolve_attention("no_such_attention", torch.device("cpu"))
    for name in ("reference", "sdpa", "linear", "linear_reference"):
        assert name in str(err.value)


def test_fallback_warns_once():
    fake = A.AttentionBackend(
        "fake_fused", S.sdpa_attention, "softmax", ("cpu", "cuda"), ("module_that_does_not_exist",), True, "test"
    )
    A.register_attention(fake)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = A.resolve_attention("fake_fused", torch.device("cpu"))
            second = A.resolve_attention("fake_fused", torch.device("cpu"))
        assert first.name == second.name == "reference"
        msgs = [str(w.message) for w in caught if "fake_fused" in str(w.message)]
        assert len(msgs) == 1 and "module_that_does_not_exist" in msgs[0]
    finally:
        A.unregister_attention("fake_fused")
    assert "fake_fused" not in A.available_attention()


def test_wrong_device_falls_back_within_kind():
    gpu_only = A.AttentionBackend("fake_gpu_linear", L.linear_attention, "linear", ("cuda",), (), True, "test")
    A.register_attention(gpu_only)
    try:
        with pytest.warns(RuntimeWarning, match="cuda"):
            assert A.resolve_attention("fake_gpu_linear", "cpu").name == "linear_reference"
    finally:
        A.unregister_attention("fake_gpu_linear")


# ----------------------------------------------------------------------------- encoder


@pytest.mark.parametrize("attention", ["sdpa", "linear", "reference"])
def test_encoder_forward_backward(attention):
    torch.manual_seed(0)
    cfg = EncoderConfig(d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.1, attention=attention)
    model = TokenEncoder(vocab_size=20, cfg=cfg)
    head = RegressionHead(32, 3, hidden=16, n_extra=2)
    ids, cu, max_len = pack_token_lists([[1, 2, 3], [], [4, 5, 6, 7, 8, 9], [3]])
    tokens = model(ids, cu, max_len)
    assert tokens.shape == (10, 32)
    pred = head(segment_mean(tokens, cu), torch.randn(4, 2))
    loss = pred.pow(2).mean() + TokenHead(32, 20)(tokens).logsumexp(-1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.embed.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("attention", ["sdpa", "linear"])
def test_encoder_sequence_independent_of_batch(attention):
    torch.manual_seed(0)
    cfg = EncoderConfig(d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0, attention=attention)
    enc = Encoder(cfg).double().eval()
    lengths = [5, 1, 12, 0, 7, 3]
    cu = lengths_to_cu_seqlens(torch.tensor(lengths))
    x = torch.randn(int(cu[-1]), 32, dtype=torch.float64)
    with torch.no_grad():
        batch_out = enc(x, cu, max(lengths))
        s, e = int(cu[4]), int(cu[5])  # the length-7 sequence
        alone = enc(x[s:e], torch.tensor([0, e - s], dtype=torch.int32), e - s)
    torch.testing.assert_close(batch_out[s:e], alone)


def test_encode_padded_matches_packed():
    torch.manual_seed(0)
    cfg = EncoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0)
    model = TokenEncoder(vocab_size=10, cfg=cfg).eval()
    ids = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    tokens, cu, max_len = model.encode_padded(ids, ids != 0)
    packed_ids, cu2, _ = pack_token_lists([[1, 2, 3], [4, 5]])
    torch.testing.assert_close(tokens, model(packed_ids, cu2, 3))
    assert cu.tolist() == [0, 3, 5] and max_len == 3


def test_encoder_config_roundtrip_and_validation():
    cfg = EncoderConfig(d_model=64, n_heads=4, attention="linear")
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="n_layer"):
        EncoderConfig.from_dict({"n_layer": 3})
    enc = Encoder(EncoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=16, max_len=4))
    with pytest.raises(ValueError, match="max_len"):
        enc(torch.randn(5, 16), torch.tensor([0, 5], dtype=torch.int32), 5)
