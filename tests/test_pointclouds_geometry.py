"""Pointclouds domain: rendering against analytic depth, projection math, the split by object."""
import numpy as np
import open3d as o3d
import pytest

from domains.pointclouds import geometry, meshes, scenes


def _scene(*meshes_):
    scene = scenes.Scene(o3d.t.geometry.RaycastingScene(), [], np.array([0.0, 0.0, 1.0]), 1.0)
    for m in meshes_:
        scene.add(m, scenes.random_material(np.random.default_rng(0), 1.0, ("plain",)))
    return scene


K = geometry.intrinsic_matrix(60.0, 62.0, 31.3, 23.7)
H, W = 48, 64


def _analytic_sphere_depth(centre, radius):
    v, u = np.mgrid[0:H, 0:W].astype(float)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)   # camera z = 1
    dc, dd = d @ centre, np.sum(d * d, -1)
    disc = dc ** 2 - dd * (centre @ centre - radius ** 2)
    t = (dc - np.sqrt(np.maximum(disc, 0))) / dd
    return np.where(disc > 0, t, 0.0), disc / dd   # depth (= t since d_z = 1), squared distance margin


def test_raycast_sphere_matches_analytic_depth():
    centre, radius = np.array([0.3, -0.2, 5.0]), 1.2
    sphere = o3d.geometry.TriangleMesh.create_sphere(radius=radius, resolution=120).translate(centre)
    _, depth = scenes.render(_scene(sphere), K, np.eye(4), H, W, np.random.default_rng(0), max_depth=100)
    truth, margin = _analytic_sphere_depth(centre, radius)
    inside = margin > 0.05 * radius ** 2          # away from the silhouette, where one pixel flips hit/miss
    assert inside.sum() > 300
    # the mesh is inscribed in the sphere: at most r (1 - cos(pi / resolution)) deeper, never shallower
    err = depth[inside] - truth[inside]
    assert err.min() > -1e-4
    assert err.max() < radius * (1 - np.cos(np.pi / 120)) * 2 + 1e-4
    assert np.array_equal(depth > 0, truth > 0) or np.mean((depth > 0) != (truth > 0)) < 0.01


def test_raycast_box_face_at_known_pose():
    # a box whose front face is the plane z = 3 (camera frame = world frame here), seen head-on
    box = o3d.geometry.TriangleMesh.create_box(4.0, 3.0, 1.0).translate([-2.0, -1.5, 3.0])
    _, depth = scenes.render(_scene(box), K, np.eye(4), H, W, np.random.default_rng(0), max_depth=100)
    v, u = np.mgrid[0:H, 0:W]
    x, y = (u - K[0, 2]) / K[0, 0] * 3.0, (v - K[1, 2]) / K[1, 1] * 3.0
    face = (np.abs(x) < 1.95) & (np.abs(y) < 1.45)
    assert face.sum() > 100
    np.testing.assert_allclose(depth[face], 3.0, atol=1e-5)
    outside = (np.abs(x) > 2.05 * 4 / 3) | (np.abs(y) > 1.55 * 4 / 3)   # beyond the back face's silhouette too
    assert np.all(depth[outside] == 0)


def test_rendered_depth_backprojects_and_projects_to_the_same_pixels():
    box = o3d.geometry.TriangleMesh.create_box(2.0, 2.0, 2.0).translate([-1.0, -1.0, 4.0])
    ext = geometry.look_at(np.array([0.5, -6.0, 3.5]), np.array([0.0, 0.0, 5.0]))
    _, depth = scenes.render(_scene(box), K, ext, H, W, np.random.default_rng(0), max_depth=100)
    assert (depth > 0).sum() > 50
    points = geometry.backproject(depth, K)
    np.testing.assert_allclose(geometry.project(points, K, H, W), depth, rtol=1e-6, atol=1e-6)


def test_projection_rounds_zbuffers_and_drops_points_behind():
    # u = fx x / z + cx: 31.3 + 60 * 0.1 / 2 = 34.3 -> column 34; v = 23.7 + 62 * 0.05 / 2 = 25.25 -> row 25
    pts = np.array([[0.1, 0.05, 2.0], [0.15, 0.075, 3.0], [0.0, 0.0, -1.0], [100.0, 0.0, 1.0]], np.float32)
    sparse = geometry.project(pts, K, H, W)
    assert (sparse > 0).sum() == 1
    assert sparse[25, 34] == pytest.approx(2.0)        # the nearer of the two points on that pixel wins
    ext = np.eye(4)
    ext[:3, 3] = [0.0, 0.0, 1.0]                        # world-to-camera: camera 1 m behind the world origin
    moved = geometry.project(pts[:1], K, H, W, ext)
    assert moved[np.nonzero(moved)] == pytest.approx(3.0)


def test_point_features_describe_the_local_shape_and_spacing():
    v, u = np.mgrid[0:20, 0:20].astype(float)
    plane = np.stack([u * 0.1, v * 0.1, np.full_like(u, 5.0)], -1).reshape(-1, 3)   # fronto-parallel grid
    shape, spacing = geometry.point_features(plane)
    np.testing.assert_allclose(shape[:, 2], 0, atol=1e-6)          # no spread along the normal (z)
    np.testing.assert_allclose(shape[:, :3].sum(1), 1, atol=1e-6)  # normalized by the trace
    assert np.all(shape[:, 0] > 0.2) and np.all(shape[:, 1] > 0.2)
    np.testing.assert_allclose(spacing, 0.1, atol=1e-6)
    line = np.stack([np.arange(30) * 0.05, np.zeros(30), np.full(30, 3.0)], 1)      # a scan line along x
    shape, _ = geometry.point_features(line)
    np.testing.assert_allclose(shape[:, 0], 1, atol=1e-6)


def test_split_by_object():
    assert meshes.check_split({"train": ["bunny", "cow"], "val": ["ant"], "test": ["airplane"]}) == []
    problems = meshes.check_split({"train": ["bunny", "airplane"], "val": ["ant"], "test": ["airplane", "dragon"]})
    assert any("both train and test" in p for p in problems) and any("'dragon'" in p for p in problems)
    # every file of one object shares a group (e.g. the two bunny files): a split never separates them
    groups = {}
    for m in meshes.CATALOGUE:
        groups.setdefault(m.group, []).append(m.path)
    assert len(groups["bunny"]) == 2 and len(groups["airplane"]) == 2
    test_sources = meshes.sources_of(["airplane", "bone"])
    assert {m.group for m in test_sources} == {"airplane", "bone"}


def test_scenes_place_only_their_split_meshes():
    rng = np.random.default_rng(3)
    settings = {"scale": [0.5, 2.0], "objects": [3, 3], "primitives": [0, 0]}
    sources = meshes.sources_of(["ant", "nut"])
    for _ in range(3):
        scene = scenes.compose(rng, sources, settings, n_views=1)
        assert len(scene.objects) == 3 and set(scene.objects) <= {"ant", "nut"}


def test_densified_cloud_is_open3ds_in_a_fixed_order():
    """The dense .ply holds the points and colours open3d's create_from_rgbd_image gives (world frame), in
    row-major pixel order, so the same prediction writes the same file on every run."""
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 5.0, (12, 16)).astype(np.float32)
    depth[2, 3], depth[5, 7] = 0.0, np.nan                                # no depth: no point
    image = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    K = geometry.intrinsic_matrix(20.0, 21.0, 7.5, 5.5)
    extrinsic = geometry.look_at(np.array([1.0, -2.0, 0.5]), np.array([0.0, 0.0, 0.0]))
    ours = geometry.densified_cloud(depth, K, image, extrinsic)
    t = lambda a, dt=o3d.core.Dtype.Float64: o3d.core.Tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
    img = lambda a: o3d.t.geometry.Image(t(a, o3d.core.Dtype.Float32))  # noqa: E731
    rgbd = o3d.t.geometry.RGBDImage(img(image.astype(np.float32) / 255), img(np.nan_to_num(depth)))
    ref = o3d.t.geometry.PointCloud.create_from_rgbd_image(rgbd, t(K), t(extrinsic), depth_scale=1.0, depth_max=1e9)
    a = np.concatenate([ours.point.positions.numpy(), ours.point.colors.numpy()], 1)
    b = np.concatenate([ref.point.positions.numpy(), ref.point.colors.numpy()], 1)
    assert len(a) == 12 * 16 - 2
    np.testing.assert_allclose(a[np.lexsort(a.T)], b[np.lexsort(b.T)], atol=1e-5)   # float32 points
    again = geometry.densified_cloud(depth, K, image, extrinsic).point.positions.numpy()
    np.testing.assert_array_equal(again, ours.point.positions.numpy())
