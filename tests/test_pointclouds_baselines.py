"""Pointclouds domain: baselines and metrics on synthetic planes with exact answers."""
import numpy as np
import pytest

from domains.pointclouds import baselines, depth_metrics, features, geometry

H, W = 48, 64
K = geometry.intrinsic_matrix(50.0, 50.0, 31.5, 23.5)


def _tilted_plane() -> np.ndarray:
    """Depth of a plane seen in perspective: its inverse depth is affine in the pixel coordinates."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    return (1.0 / (0.25 + 0.002 * u + 0.003 * v)).astype(np.float32)


def _sparse(depth: np.ndarray, density: float, seed: int = 0) -> np.ndarray:
    keep = np.random.default_rng(seed).random(depth.shape) < density
    keep[[0, 0, -1, -1], [0, -1, 0, -1]] = True          # the corners: the hull covers the image
    return np.where(keep, depth, 0).astype(np.float32)


def test_linear_in_inverse_depth_is_exact_on_a_plane():
    depth = _tilted_plane()
    out = baselines.linear(_sparse(depth, 0.05), space="inverse")
    np.testing.assert_allclose(out, depth, rtol=1e-5)
    # in plain depth the same interpolation is not exact (depth is not affine in pixels on a slanted plane)
    assert np.max(np.abs(baselines.linear(_sparse(depth, 0.05), space="depth") / depth - 1)) > 1e-4


@pytest.mark.parametrize("method", list(baselines.METHODS))
def test_every_method_is_exact_on_a_fronto_parallel_plane(method):
    depth = np.full((H, W), 2.5, np.float32)
    image = np.random.default_rng(1).integers(0, 255, (H, W, 3)).astype(np.uint8)
    for setting in baselines.settings_grid(method)[:6]:
        out = baselines.complete(method, _sparse(depth, 0.03), image, K, setting)
        assert out.shape == depth.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, 2.5, rtol=1e-5)


def test_nearest_and_bilateral_keep_the_points_and_fill_everything():
    depth = _tilted_plane()
    sparse = _sparse(depth, 0.02, seed=3)
    known = sparse > 0
    image = np.zeros((H, W, 3), np.uint8)
    near = baselines.complete("nearest", sparse, image, K, {})
    np.testing.assert_array_equal(near[known], sparse[known])
    # joint bilateral is a weighted mean of the k nearest points: inside their range, and the point itself
    # where the spatial kernel is much narrower than the point spacing
    wide = baselines.complete("bilateral", sparse, image, K, {"sigma_space": 4.0})
    assert np.all(wide >= sparse[known].min() - 1e-5) and np.all(wide <= sparse[known].max() + 1e-5)
    narrow = baselines.complete("bilateral", sparse, image, K, {"sigma_space": 0.2})
    np.testing.assert_allclose(narrow[known], sparse[known], rtol=1e-5)


def test_ip_basic_prefers_the_nearer_surface_at_an_edge():
    # a near box (2 m) in front of a wall (6 m), points every 3rd pixel: dilation of inverted depth picks near
    depth = np.full((H, W), 6.0, np.float32)
    depth[10:30, 20:40] = 2.0
    sparse = np.zeros_like(depth)
    sparse[::3, ::3] = depth[::3, ::3]
    out = baselines.ip_basic(sparse, kernel="diamond3", extrapolate=False, blur="none")
    assert np.all(np.isfinite(out)) and np.all(out > 0)
    assert np.median(out[12:28, 22:38]) == pytest.approx(2.0) and np.median(out[35:, :]) == pytest.approx(6.0)


def test_outlier_filter_drops_an_isolated_point():
    sparse = np.zeros((H, W), np.float32)
    sparse[::2, ::2] = 3.0
    sparse[20, 30] = 0.4                                  # a point floating 2.6 m in front of the wall
    clean = baselines.filtered(sparse, K, "sor1")
    assert clean[20, 30] == 0 and (clean > 0).sum() >= 0.95 * ((sparse > 0).sum() - 1)
    assert np.array_equal(baselines.filtered(sparse, K, "none"), sparse)


def test_push_pull_is_exact_at_points_and_constant_on_constant_input():
    rows, cols = np.nonzero(_sparse(np.ones((H, W)), 0.01, seed=5))
    values = np.random.default_rng(0).uniform(0.5, 2.0, len(rows)).astype(np.float32)
    out = features.push_pull(rows, cols, values, (H, W))
    np.testing.assert_allclose(out[rows, cols], values, rtol=1e-5)
    np.testing.assert_allclose(features.push_pull(rows, cols, np.full(len(rows), 1.7, np.float32), (H, W)), 1.7,
                               rtol=1e-5)


def test_frame_metrics_on_known_errors():
    truth = np.array([[1.0, 2.0], [4.0, 0.0]], np.float32)      # 0 = no ground truth: not scored
    pred = np.array([[1.1, 2.0], [2.0, 9.0]], np.float32)
    m = depth_metrics.frame_metrics(pred, truth)
    assert m["absrel"] == pytest.approx((0.1 + 0 + 0.5) / 3, rel=1e-6)
    assert m["mae"] == pytest.approx((0.1 + 0 + 2.0) / 3, rel=1e-6)
    assert m["rmse"] == pytest.approx(np.sqrt((0.01 + 4.0) / 3), rel=1e-6)
    assert m["delta1"] == pytest.approx(2 / 3)
    assert m["irmse"] == pytest.approx(np.sqrt(((1000 / 1.1 - 1000) ** 2 + (500 - 250) ** 2) / 3), rel=1e-5)
    disp = depth_metrics.disparity_metrics([pred], [truth], scale=10.0)
    assert disp["disp_mae"] == pytest.approx((abs(10 / 1.1 - 10) + 0 + abs(5 - 2.5)) / 3, rel=1e-5)
    assert disp["bad2"] == pytest.approx(1 / 3)


def test_uncertainty_rank_correlation():
    truth = np.full((10, 10), 2.0)
    err = np.linspace(0, 0.5, 100).reshape(10, 10)
    assert depth_metrics.error_uncertainty_spearman([truth * (1 + err)], [truth], [err]) == pytest.approx(1.0)
    assert depth_metrics.error_uncertainty_spearman([truth * (1 + err)], [truth], [-err]) == pytest.approx(-1.0)
