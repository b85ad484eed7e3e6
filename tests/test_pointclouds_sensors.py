"""Pointclouds domain: the simulated sensors (seeded; their sampling and noise statistics)."""
import numpy as np
import pytest

from domains.pointclouds import geometry, sensors

H, W = 96, 128
K = geometry.intrinsic_matrix(110.0, 110.0, 63.5, 47.5)


def _wall(z: float) -> np.ndarray:
    return np.full((H, W), z, np.float32)


def _textured(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tiles = rng.integers(30, 230, (H // 8, W // 8, 3)).astype(np.uint8)
    return np.repeat(np.repeat(tiles, 8, 0), 8, 1)


@pytest.mark.parametrize("pattern", sensors.PATTERNS)
def test_same_seed_same_points_other_seed_other_points(pattern):
    depth, image = _wall(4.0), _textured()
    cast = sensors.image_source(depth, K)
    a = sensors.simulate(pattern, cast, depth, image, K, np.random.default_rng(7), mounted=False)
    b = sensors.simulate(pattern, cast, depth, image, K, np.random.default_rng(7), mounted=False)
    c = sensors.simulate(pattern, cast, depth, image, K, np.random.default_rng(8), mounted=False)
    assert len(a) > 20 and np.array_equal(a, b)
    assert len(a) != len(c) or not np.allclose(a, c)


@pytest.mark.parametrize("pattern,beams", [("lidar16", 16), ("lidar32", 32), ("lidar64", 64)])
def test_lidar_scan_lines_and_range_noise(pattern, beams):
    depth = _wall(5.0)
    pts = sensors.lidar(sensors.image_source(depth, K), K, (H, W), pattern, np.random.default_rng(0),
                        offset=np.zeros(3))
    _, lo, hi, _ = sensors.LIDARS[pattern]
    elevation = np.degrees(np.arctan2(-pts[:, 1], np.hypot(pts[:, 0], pts[:, 2])))
    # every point lies on one of the beams (within the noise), and the beams in view are all there
    spacing = (hi - lo) / (beams - 1)
    assert np.all(np.abs(((elevation - lo) / spacing) - np.rint((elevation - lo) / spacing)) < 0.05)
    half_vfov = np.degrees(np.arctan(H / 2 / K[1, 1]))
    in_view = np.sum((np.linspace(lo, hi, beams) > -half_vfov + 0.5) & (np.linspace(lo, hi, beams) < half_vfov - 0.5))
    assert len(np.unique(np.rint((elevation - lo) / spacing))) >= in_view
    # range noise ~ N(0, 2 cm) on a flat wall at 5 m: the z error of a ray is range error x cos(angle)
    ranges = np.linalg.norm(pts, axis=1)
    truth = 5.0 * ranges / pts[:, 2]                      # the wall's range along each point's ray
    err = ranges - truth
    core = np.abs(err) < 0.2                              # spurious early returns are not noise
    assert 0.015 < err[core].std() < 0.025
    assert 0.0005 < np.mean(~core) < 0.01                 # 0.3 % spurious returns


def test_tof_noise_grows_with_depth():
    stds = []
    for z in (1.0, 4.0):
        depth, image = _wall(z), _textured()
        pts = sensors.tof(sensors.image_source(depth, K), K, (H, W), image, np.random.default_rng(1),
                          offset=np.zeros(3))
        err = pts[:, 2] - z
        stds.append(err.std())
        assert len(pts) > 0.9 * (H // 4) * (W // 4)      # 2 % dropouts on a bright wall within range
    expected = [0.003 + 0.004 * 1.0, 0.003 + 0.004 * 16.0]
    np.testing.assert_allclose(stds, expected, rtol=0.15)
    beyond = sensors.tof(sensors.image_source(_wall(9.0), K), K, (H, W), _textured(), np.random.default_rng(1))
    assert len(beyond) == 0                               # no return beyond the 8 m range


def test_tof_flying_pixels_at_depth_edges():
    depth = _wall(2.0)
    depth[:, W // 2 + 1:] = 6.0                            # an edge inside a column of ToF pixels
    pts = sensors.tof(sensors.image_source(depth, K), K, (H, W), _textured(), np.random.default_rng(2))
    mixed = (pts[:, 2] > 2.3) & (pts[:, 2] < 5.5)
    assert mixed.sum() >= 5                               # depths between the two surfaces exist
    assert mixed.mean() < 0.1


def test_sfm_points_need_texture_and_have_outliers():
    depth = _wall(3.0)
    blank = np.full((H, W, 3), 128, np.uint8)
    assert len(sensors.sfm(depth, K, blank, np.random.default_rng(0))) == 0
    rel = []
    for seed in range(20):
        pts = sensors.sfm(depth, K, _textured(seed), np.random.default_rng(seed))
        assert 20 <= len(pts) <= 300
        rel.append(np.abs(pts[:, 2] / 3.0 - 1))
    rel = np.concatenate(rel)
    gross = rel > 0.05                                    # 1 % noise: beyond 5 sigma is a mismatch
    assert 0.02 < gross.mean() < 0.08
    assert np.median(rel) < 0.01
