"""Pointclouds domain: the fusion model (packed varying point counts, gradients, scale-free depth)."""
import numpy as np
import pytest
import torch

from domains.pointclouds import features, geometry, model

META = {"patch": 4, "point_hidden": 8, "decoder_hidden": 8, "min_points": 4,
        "encoder": {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "dropout": 0.0, "attention": "sdpa",
                    "rotary": True, "max_len": 512}}
K = geometry.intrinsic_matrix(40.0, 40.0, 15.5, 11.5)


def _sample(n_points: int, seed: int, shape=(24, 32), scale: float = 1.0) -> features.Sample:
    rng = np.random.default_rng(seed)
    # a slanted surface with some relief: no two points at exactly the same distance (KNN ties could be
    # broken differently once the coordinates are scaled)
    depth = (rng.uniform(1.5, 4.0) + np.linspace(0, 1, shape[1])[None] + rng.uniform(0, 0.2, shape)).astype(np.float32)
    depth = depth * np.float32(scale)
    sparse = np.zeros(shape, np.float32)
    flat = rng.choice(depth.size, n_points, replace=False)
    sparse.reshape(-1)[flat] = depth.reshape(-1)[flat]
    image = rng.integers(0, 255, (*shape, 3)).astype(np.uint8)
    return features.featurize(sparse, image, K, depth)


def _randomized_model(seed=0) -> model.DepthCompletionNet:
    torch.manual_seed(seed)
    net = model.build(META)
    torch.nn.init.normal_(net.head.net.weight, std=0.05)   # the head starts at zero; make it act
    return net


def test_forward_backward_with_varying_point_counts_and_sizes():
    samples = [_sample(n, k) for k, n in enumerate((5, 40, 300))] + [_sample(20, 9, shape=(22, 30))]
    batch = model.Collate(samples, META["patch"], augment=True)([0, 1, 2, 3])
    lengths = batch["cu_seqlens"].diff()
    n_patch = [6 * 8] * 3 + [6 * 8]                          # 22 x 30 pads to 24 x 32
    assert len(set(lengths.tolist())) > 1                    # packed sequences of different lengths
    assert torch.all(lengths > torch.tensor(n_patch))        # every frame has point tokens after its patches
    net = _randomized_model()
    out = net(batch)
    assert out.shape == (sum(n_patch), META["patch"] ** 2, 2)
    loss, parts = model.loss(out, batch)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.point_mlp[0].weight.grad.abs().sum() > 0      # the point tokens reach the loss
    assert set(parts) == {"l1", "nll"}


def test_flipped_training_frames_stay_consistent():
    """A left-right flip moves the image, the base map, the truth and the points together."""
    s = _sample(60, 6)
    plain = model.Collate([s], META["patch"])([0])
    collate = model.Collate([s], META["patch"], augment=True, no_image=0.0)
    torch.manual_seed(0)
    for _ in range(20):
        flipped = collate([0])
        truth = model.unpatch(flipped["truth"].numpy(), *s.shape, META["patch"])
        if np.allclose(truth, s.truth[:, ::-1], equal_nan=True) and not np.allclose(truth, s.truth, equal_nan=True):
            break
    else:
        pytest.fail("no flipped frame in 20 draws")
    p = META["patch"]
    channels = lambda b: model.unpatch(b["patch_features"].numpy().reshape(-1, p * p, 8), *s.shape, p)  # noqa: E731
    np.testing.assert_allclose(channels(flipped)[..., 3], channels(plain)[..., 3][:, ::-1], atol=1e-6)  # smooth
    np.testing.assert_allclose(channels(flipped)[..., 7], channels(plain)[..., 7][:, ::-1])             # points
    # the image is flipped too (its exposure may be jittered: compare where the pixels are, by correlation)
    a, b = channels(flipped)[..., 0], channels(plain)[..., 0][:, ::-1]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95


def test_untrained_model_returns_the_push_pull_map():
    s = _sample(60, 1)
    with torch.no_grad():
        out = model.build(META)(model.Collate([s], META["patch"])([0]))
    r = model.unpatch(out[..., 0].numpy(), *s.shape, META["patch"])
    np.testing.assert_allclose(r, s.smooth, atol=1e-6)


def test_patch_and_unpatch_are_inverse():
    a = np.arange(24 * 32 * 1, dtype=np.float32).reshape(24, 32, 1)
    patches = model._patches(a, 4)
    assert patches.shape == (48, 16)
    np.testing.assert_array_equal(model.unpatch(patches, 24, 32, 4), a[..., 0])
    np.testing.assert_array_equal(model.unpatch(patches, 22, 30, 4), a[:22, :30, 0])


def test_prediction_scales_with_the_scene():
    """r is scale-free: the same scene 7x larger gives a 7x larger depth (and the same relative error)."""
    from domains.pointclouds.training import predict_samples
    net = _randomized_model(1).eval()
    small, large = _sample(80, 4), _sample(80, 4, scale=7.0)
    (d1, b1), (d2, b2) = predict_samples([net], [small, large], META["patch"])
    np.testing.assert_allclose(d2, 7.0 * d1, rtol=1e-4)
    np.testing.assert_allclose(b2, b1, rtol=1e-4, atol=1e-6)


def test_ensemble_spread_adds_to_the_uncertainty():
    from domains.pointclouds.training import predict_samples
    s = _sample(50, 2)
    a, b = _randomized_model(2).eval(), _randomized_model(3).eval()
    (_, single), = predict_samples([a], [s], META["patch"])
    (_, both), = predict_samples([a, b], [s], META["patch"])
    (_, other), = predict_samples([b], [s], META["patch"])
    assert np.all(both >= np.minimum(single, other) * (1 - 1e-5))
    assert np.mean(both) > np.mean((single + other) / 2)


@pytest.mark.parametrize("n_points", [1, 3])
def test_featurize_handles_very_few_points(n_points):
    s = _sample(n_points, 5)
    assert np.all(np.isfinite(s.smooth)) and len(s.r) == n_points
    with torch.no_grad():
        out = model.build(META)(model.Collate([s], META["patch"])([0]))
    assert torch.isfinite(out).all()
