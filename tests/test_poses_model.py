"""Poses domain model: forward/backward, HoT pruning shapes and FLOPs, KTP biases, windows, metrics vs mmpose."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("mmpose", reason="the poses domain builds on mmpose's metadata, codecs and metrics")

from domains.poses.flops import counted_flops, lifter_flops  # noqa: E402
from domains.poses.model import PoseLifter, dpc_knn_select, lifting_loss, sigma_scale, skeleton_hops  # noqa: E402
from domains.poses.skeleton import h36m_links  # noqa: E402
from domains.poses.training import Encoded, WindowCollate, predict_frames, window_starts  # noqa: E402


def _meta(hot=False, ktp=False, window=16, keep=4, layers=2, select="cluster"):
    return {"encoder": {"d_model": 16, "n_heads": 2, "n_layers": layers, "d_ff": 32, "dropout": 0.0,
                        "attention": "sdpa", "rotary": True, "max_len": 256},
            "model": {"ktp": ktp, "hot": hot, "hot_prune_after": 0, "hot_keep": keep, "hot_knn": 3, "window": window,
                      "hot_select": select},
            "in_channels": 3, "skeleton_links": h36m_links(), "window": window, "fps": 50.0}


@pytest.mark.parametrize("hot,ktp", [(False, False), (True, False), (False, True), (True, True)])
def test_forward_backward_shapes(hot, ktp):
    torch.manual_seed(0)
    model = PoseLifter(_meta(hot, ktp))
    batch = {"inputs": torch.randn(3, 16, 17, 3), "target": torch.randn(3, 16, 17, 3) * 0.2,
             "mask": torch.ones(3, 16, dtype=torch.bool)}
    out = model(batch)
    assert out.shape == (3, 16, 17, 4)
    loss, parts = lifting_loss(out, batch)
    loss.backward()
    assert torch.isfinite(loss) and set(parts) == {"mpjpe_mm", "nll"}
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


def test_uncertainty_head_does_not_shape_coordinates():
    torch.manual_seed(0)
    model = PoseLifter(_meta())
    out = model({"inputs": torch.randn(2, 16, 17, 3)})
    out[..., 3].sum().backward()
    for p in (model.head.weight, model.embed.weight):
        assert p.grad is None or not p.grad.any()
    assert model.sigma[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("select", ["cluster", "uniform", "pool"])
def test_hot_prunes_frames_in_middle_layers(select):
    torch.manual_seed(0)
    model = PoseLifter(_meta(hot=True, keep=4, layers=3, select=select))
    seen = []
    handle = model.temporal[1].register_forward_hook(lambda m, i, o: seen.append(i[2]))
    batch = {"inputs": torch.randn(2, 16, 17, 3), "target": torch.randn(2, 16, 17, 3) * 0.2,
             "mask": torch.ones(2, 16, dtype=torch.bool)}
    out = model.eval()(batch)
    handle.remove()
    assert seen == [4]           # the temporal block after pruning attends over 4 frames, not 16
    assert out.shape == (2, 16, 17, 4)
    for p in (model.head.weight, model.recover.out.weight):   # zero at init (start as identity / zero pose)
        torch.nn.init.normal_(p, std=0.1)
    lifting_loss(model.train()(batch), batch)[0].backward()
    assert model.recover.kv.weight.grad.abs().sum() > 0     # the recovery attends to the kept tokens


def test_hot_token_selections():
    h = torch.arange(12, dtype=torch.float32).view(1, 12, 1, 1).expand(2, 12, 17, 4).contiguous()
    frames = torch.arange(12, dtype=torch.float32)[None].expand(2, 12)
    uniform = PoseLifter(_meta(hot=True, window=12, keep=4, select="uniform"))
    kept, times = uniform._prune(h, frames)
    assert times[0].tolist() == [1, 4, 7, 10] and torch.equal(kept[0, :, 0, 0], times[0])
    pool = PoseLifter(_meta(hot=True, window=12, keep=4, select="pool"))
    kept, times = pool._prune(h, frames)
    assert times[0].tolist() == [1, 4, 7, 10] and torch.allclose(kept[:, :, 5, 2], times)   # means of 0-2, 3-5, ...


def test_dpc_knn_picks_cluster_centres_in_time_order():
    # three tight clusters of frames: one centre per cluster is chosen
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    feats = torch.cat([c + 0.01 * torch.randn(5, 2, generator=g) for c in centres])[None]
    idx = dpc_knn_select(feats, 3, 3)[0]
    assert idx.tolist() == sorted(idx.tolist())
    assert sorted((idx // 5).tolist()) == [0, 1, 2]


@pytest.mark.parametrize("hot,ktp,frames,rel", [(False, False, 16, False), (True, False, 16, True),
                                                (True, True, 24, False)])
def test_flops_formula_matches_torch_counter(hot, ktp, frames, rel):
    meta = _meta(hot, ktp, window=frames, layers=3)
    meta["model"]["rel_inputs"] = rel
    model = PoseLifter(meta).eval()
    assert lifter_flops(meta, frames, 2) == counted_flops(model, {"inputs": torch.randn(2, frames, 17, 3)})


def test_hot_cuts_flops():
    full, hot = _meta(window=81, layers=4), _meta(hot=True, window=81, keep=20, layers=4)
    for m in (full, hot):
        m["encoder"].update(d_model=64, n_heads=4, d_ff=128)
    assert lifter_flops(hot, 81) < 0.6 * lifter_flops(full, 81)


def test_skeleton_hops():
    hops = skeleton_hops(h36m_links())
    assert hops[0, 3] == 3 and hops[13, 16] == 6 and hops[3, 3] == 0 and (hops == hops.T).all()


def test_windows_cover_every_frame_and_pad_short_sequences():
    assert window_starts(10, 27, 13) == [0]
    assert window_starts(60, 27, 13) == [0, 13, 26, 33]
    enc = Encoded(np.arange(40 * 17 * 3, dtype=np.float32).reshape(40, 17, 3), np.zeros((40, 17, 3), np.float32),
                  np.array([0, 30, 40]))
    batch = WindowCollate(enc, 16)([(1, 0)])
    assert batch["mask"][0].sum() == 10
    np.testing.assert_array_equal(batch["inputs"][0, 12].numpy(), enc.inputs[39])     # edge padding
    # an identity "model" returns every frame's own input whatever the windows
    out = predict_frames(lambda b: b["inputs"], enc.inputs, enc.seq_start, 16, batch_size=3)
    np.testing.assert_allclose(out, enc.inputs, atol=1e-4)


def test_flip_mirrors_inputs_and_targets_consistently():
    enc = Encoded(np.random.default_rng(0).normal(0, 0.3, (20, 17, 3)).astype(np.float32),
                  np.random.default_rng(1).normal(0, 0.3, (20, 17, 3)).astype(np.float32), np.array([0, 20]))
    np.random.seed(0)
    collate = WindowCollate(enc, 8, flip=True)
    flipped = None
    for _ in range(10):
        b = collate([(0, 0)])
        if not np.allclose(b["inputs"][0].numpy(), enc.inputs[:8]):
            flipped = b
            break
    assert flipped is not None
    # left shoulder (11) <- right shoulder (14) mirrored in x, in both the 2D input and the 3D target
    np.testing.assert_allclose(flipped["inputs"][0, :, 11, 0].numpy(), -enc.inputs[:8, 14, 0], atol=1e-6)
    np.testing.assert_allclose(flipped["target"][0, :, 11, 0].numpy(), -enc.targets[:8, 14, 0], atol=1e-6)
    np.testing.assert_allclose(flipped["target"][0, :, 11, 1].numpy(), enc.targets[:8, 14, 1], atol=1e-6)


def test_metrics_match_mmpose_and_known_values():
    from mmpose.evaluation.functional import keypoint_mpjpe

    from domains.poses.metrics import lifting_metrics, mpjve
    rng = np.random.default_rng(0)
    gt = rng.normal(0, 0.3, (50, 17, 3))
    pred = gt + rng.normal(0, 0.02, gt.shape)
    m = lifting_metrics(pred, gt, np.array([0, 20, 50]))
    mask = np.ones((50, 17), bool)
    assert m["mpjpe"] == pytest.approx(keypoint_mpjpe(pred * 1000, gt * 1000, mask), rel=1e-9)
    assert m["p_mpjpe"] == pytest.approx(keypoint_mpjpe(pred * 1000, gt * 1000, mask, "procrustes"), rel=1e-9)
    # a rotated, scaled, shifted copy has zero P-MPJPE; a scaled copy zero N-MPJPE
    c, s = np.cos(0.4), np.sin(0.4)
    rot = gt @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T * 1.3 + 0.1
    assert lifting_metrics(rot, gt)["p_mpjpe"] < 1e-6
    assert lifting_metrics(gt * 0.8, gt)["n_mpjpe"] < 1e-6
    # a constant per-frame offset has no velocity error; a jump in one frame has a known one
    assert mpjve(gt + 0.05, gt, np.array([0, 50])) == pytest.approx(0.0, abs=1e-9)
    bumped = gt.copy()
    bumped[10] += [0.0, 0.0, 0.017]
    assert mpjve(bumped * 1000, gt * 1000, np.array([0, 50])) == pytest.approx(2 * 17.0 / 49, rel=1e-9)


def test_sigma_calibration_hits_coverage():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.01, 0.05, 20000)
    err = np.linalg.norm(rng.normal(0, 1, (20000, 3)) * (2.0 * sigma)[:, None], axis=-1)   # true sigma = 2x
    s = sigma_scale(err, sigma)
    assert s == pytest.approx(2.0, rel=0.05)
    assert np.mean(err <= 2.5003 * s * sigma) == pytest.approx(0.9, abs=1e-3)


def test_peer_training_keeps_the_best_epoch_and_stops_after_patience(tmp_path):
    """A peer's mmengine config stops training on our trainer's rule (mmengine's EarlyStoppingHook, patience
    epochs without a lower validation MPJPE), and our hook keeps the best epoch's weights, not the last."""
    from types import SimpleNamespace

    from mmengine.registry import HOOKS

    from domains.poses.baselines import _KeepBest, build_config
    section = {"mmpose_videopose3d_27": {"epochs": 30, "batch_size": 8, "channels": 16, "patience": 2}}
    stopping = [h for h in build_config("mmpose-videopose3d-27", section, tmp_path, 0, None).custom_hooks
                if h["type"] == "EarlyStoppingHook"]
    assert len(stopping) == 1
    stopper = HOOKS.build(stopping[0])
    weights = torch.nn.Linear(2, 1)
    runner = SimpleNamespace(model=weights, train_loop=SimpleNamespace(stop_training=False),
                             logger=SimpleNamespace(info=lambda *a: None))
    keep = _KeepBest("mmpose-videopose3d-27")
    for epoch, mpjpe in enumerate([0.30, 0.20, 0.25, 0.26, 0.10]):
        with torch.no_grad():
            weights.bias.fill_(epoch)
        for hook in (keep, stopper):
            hook.after_val_epoch(runner, {"MPJPE": mpjpe})
        if runner.train_loop.stop_training:
            break
    assert epoch == 3 and keep.best_epoch == 1 and keep.best == 0.20   # epochs 2, 3 not better: stop
    assert float(keep.state["bias"]) == 1.0                             # the best epoch's weights, not the last
    assert [h["epoch"] for h in keep.history] == [0, 1, 2, 3]
    unset = {"mmpose_videopose3d_27": {"epochs": 3, "batch_size": 8, "channels": 16}}   # no patience: all epochs
    assert not [h for h in build_config("mmpose-videopose3d-27", unset, tmp_path, 0, None).get("custom_hooks", [])
                if h["type"] == "EarlyStoppingHook"]
