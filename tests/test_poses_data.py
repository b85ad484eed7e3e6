"""Poses domain data: forward kinematics, layouts, cameras, noise, triangulation, split."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pybullet_data", reason="the poses domain reads pybullet 3.2.7's humanoid and motion clips")

from domains.poses import humanoid, motions  # noqa: E402
from domains.poses.cameras import Camera, look_at, project_camera, read_qca, triangulate, virtual_camera  # noqa: E402
from domains.poses.noise import NoiseModel, detect, fill_missing, scale_bones  # noqa: E402

S = humanoid.SCALE


def _frame(root_pos, root_quat=(1, 0, 0, 0), knee=0.0):
    """One DeepMimic frame: every spherical joint at identity, the right knee at `knee` radians."""
    f = np.zeros(44)
    f[0], f[1:4], f[4:8] = 1 / 30, root_pos, root_quat
    col = 8
    for name in humanoid.MOTION_JOINTS:
        if name.endswith(("knee", "elbow")):
            f[col] = knee if name == "right_knee" else 0.0
            col += 1
        else:
            f[col:col + 4] = (1, 0, 0, 0)
            col += 4
    return f[None]


def test_fk_rest_pose_matches_hand_computed_positions():
    j = humanoid.h36m_joints(_frame((0.0, 0.9, 0.0)))[0]
    hip = np.array([0.0, 0.9, S * 0.339548])
    knee = hip + [0, -S * 1.686184, 0]
    ankle = knee + [0, -S * 1.639480, 0]
    chest = np.array([0.0, 0.9 + S * 0.944604, 0.0])
    r_shoulder = chest + S * np.array([-0.0962, 0.974, 0.73244])
    r_wrist = r_shoulder + [0, -S * (1.099152 + 1.035788), 0]
    np.testing.assert_allclose(j[0], [0, 0.9, 0], atol=1e-9)
    np.testing.assert_allclose(j[1], hip, atol=1e-9)
    np.testing.assert_allclose(j[2], knee, atol=1e-9)
    np.testing.assert_allclose(j[3], ankle, atol=1e-9)
    np.testing.assert_allclose(j[4], hip * [1, 1, -1], atol=1e-9)
    np.testing.assert_allclose(j[7], chest, atol=1e-9)
    np.testing.assert_allclose(j[14], r_shoulder, atol=1e-9)
    np.testing.assert_allclose(j[16], r_wrist, atol=1e-9)
    np.testing.assert_allclose(j[8], 0.5 * (j[11] + j[14]), atol=1e-12)


def test_fk_rotated_root_and_bent_knee():
    # root turned +90 degrees about y (x -> -z, z -> x), right knee bent +90 degrees about its z axis
    q = (np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0)
    j = humanoid.h36m_joints(_frame((1.0, 0.9, 2.0), q, knee=np.pi / 2))[0]
    hip = np.array([1.0 + S * 0.339548, 0.9, 2.0])            # the hip's +z offset is now +x
    knee = hip + [0, -S * 1.686184, 0]
    shin = S * 1.639480          # R_z(90) (0, -a, 0) = (a, 0, 0), then R_y(90): -> (0, 0, -a)
    np.testing.assert_allclose(j[1], hip, atol=1e-9)
    np.testing.assert_allclose(j[2], knee, atol=1e-9)
    np.testing.assert_allclose(j[3], knee + [0, 0, -shin], atol=1e-9)


def test_fk_matches_pybullet_direct():
    p = pytest.importorskip("pybullet")
    frames = motions.load_frames("walk")[::10]
    root_pos, root_quat, values = humanoid.split_frames(frames)
    pos, _ = humanoid.forward_kinematics(root_pos, root_quat, values)
    client = p.connect(p.DIRECT)
    try:
        body = p.loadURDF(str(humanoid.urdf_path()), globalScaling=0.25, physicsClientId=client)
        index = {p.getJointInfo(body, i, physicsClientId=client)[1].decode(): i
                 for i in range(p.getNumJoints(body, physicsClientId=client))}
        xyzw = lambda q: [q[1], q[2], q[3], q[0]]  # noqa: E731
        for f in range(len(frames)):
            p.resetBasePositionAndOrientation(body, root_pos[f].tolist(), xyzw(root_quat[f]), physicsClientId=client)
            for name, i in index.items():
                if name in values:
                    v = values[name][f]
                    if np.ndim(v) == 0:
                        p.resetJointState(body, i, float(v), physicsClientId=client)
                    else:
                        p.resetJointStateMultiDof(body, i, xyzw(v / np.linalg.norm(v)), physicsClientId=client)
            for name, i in index.items():
                world = p.getLinkState(body, i, computeForwardKinematics=1, physicsClientId=client)[4]
                np.testing.assert_allclose(world, pos[name][f], atol=1e-5)
    finally:
        p.disconnect(client)


def test_resample_keeps_bone_lengths_and_duration():
    frames = motions.load_frames("run")
    fast = motions.resample(frames, 50.0, speed=1.25)
    slow = motions.resample(frames, 50.0, speed=0.8)
    duration = frames[:-1, 0].sum()
    assert abs(len(fast) - duration * 50 / 1.25) <= 1.5 and abs(len(slow) - duration * 50 / 0.8) <= 1.5
    j = humanoid.h36m_joints(slow)
    thigh = np.linalg.norm(j[:, 2] - j[:, 1], axis=-1)
    np.testing.assert_allclose(thigh, S * 1.686184, atol=1e-9)
    np.testing.assert_allclose(motions.resample(frames, 1 / frames[0, 0])[:3, 1:], frames[:3, 1:], atol=1e-9)


def test_projection_and_look_at():
    R = look_at(np.array([0.0, 1.0, -5.0]), np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    cam = Camera("c", np.array([[1000.0, 0, 500], [0, 1000.0, 400], [0, 0, 1]]), R, -R @ np.array([0.0, 1.0, -5.0]),
                 (1000, 800))
    # the target projects to the principal point; a point 1 m up (world y) is 200 px higher (image y down)
    np.testing.assert_allclose(cam.project(np.array([0.0, 1.0, 0.0])), [500, 400], atol=1e-9)
    np.testing.assert_allclose(cam.project(np.array([0.0, 2.0, 0.0])), [500, 200], atol=1e-9)
    pts = np.random.default_rng(0).normal(0, 1, (10, 3)) + [0, 0, 5]
    uv = project_camera(pts, cam.K)
    np.testing.assert_allclose(uv[:, 0], 1000 * pts[:, 0] / pts[:, 2] + 500, atol=1e-9)


def test_virtual_camera_sees_the_target_and_is_seeded():
    target = np.array([0.3, 0.9, -0.2])
    a = virtual_camera(np.random.default_rng(7), target, "a")
    b = virtual_camera(np.random.default_rng(7), target, "b")
    np.testing.assert_allclose(a.R, b.R)
    uv = a.project(target)
    assert 0 < uv[0] < a.size[0] and 0 < uv[1] < a.size[1]
    assert 4.0 <= a.to_camera(target)[2] <= 6.3


def test_qca_calibration_triangulates_its_own_projections():
    from domains.poses.real import pose2sim_root
    pytest.importorskip("Pose2Sim", reason="pose2sim 0.10.49 (--no-deps) ships the calibrated demo")
    cams = read_qca(pose2sim_root() / "Demo_Batch" / "calibration" / "Calib.qca.txt")
    assert [c.name for c in cams] == ["cam01", "cam02", "cam03", "cam04"]
    world = np.random.default_rng(1).uniform([-1, -1, 0.2], [1, 1, 1.8], (6, 17, 3))
    pts = np.stack([c.project(world) for c in cams])
    got, err, used = triangulate(pts, np.ones(pts.shape[:3]), cams)
    np.testing.assert_allclose(got, world, atol=1e-4)
    assert err.max() < 1e-3 and (used == 4).all()
    # a corrupted camera is dropped
    pts[2, 0, 0] += 300
    got, err, used = triangulate(pts, np.ones(pts.shape[:3]), cams, max_error_px=5)
    assert used[0, 0] == 3 and np.allclose(got[0, 0], world[0, 0], atol=1e-4)


def test_noise_model_is_seeded_and_does_what_it_says():
    pts = np.random.default_rng(0).uniform(300, 700, (400, 17, 2))
    model = NoiseModel(jitter=0.01, outlier=0.05, swap=0.0, missing=0.02)
    a = detect(pts, (1000, 1000), model, np.random.default_rng(3))
    b = detect(pts, (1000, 1000), model, np.random.default_rng(3))
    np.testing.assert_array_equal(a[0], b[0])
    kp, sc = a
    lost = sc == 0
    assert 0.02 < lost.mean() < 0.12                       # bursts of 1-5 frames
    far = np.linalg.norm(kp - pts, axis=-1) > 0.08 * 400     # outliers jump >= 0.1 box heights
    assert 0.02 < (far & ~lost).mean() < 0.1
    assert np.all(sc[~lost] > 0)


def test_fill_missing_uses_present_joints():
    kp = np.array([[[0.0, 0.0], [2.0, 2.0], [np.nan, np.nan]]])
    out, sc = fill_missing(kp, np.ones((1, 3)), np.array([[False, False, True]]))
    np.testing.assert_allclose(out[0, 2], [1.0, 1.0])
    assert sc[0, 2] == 0 and sc[0, 0] == 1


def test_bone_scaling_changes_lengths_not_topology():
    j = motions.clip_joints("walk", 50.0)[:20]
    scaled = scale_bones(j, np.random.default_rng(0), 0.1)
    ratio = np.linalg.norm(scaled[:, 2] - scaled[:, 1], axis=-1) / np.linalg.norm(j[:, 2] - j[:, 1], axis=-1)
    assert np.ptp(ratio) < 1e-9 and 0.8 < ratio[0] < 1.22 and abs(ratio[0] - 1) > 1e-4
    assert abs(scaled[..., 1].min() - j[..., 1].min()) < 1e-9


def test_split_is_by_clip():
    from domains.poses.data import split_clips
    section = {"test_clips": ["walk", "kick"], "val_clips": ["jump"]}
    clips = split_clips(section)
    assert not set(clips["train"]) & {"walk", "kick", "jump"} and len(clips["train"]) >= 8
    from core.errors import UserError
    with pytest.raises(UserError, match="known clips"):
        split_clips({"test_clips": ["moonwalk"], "val_clips": ["jump"]})
    with pytest.raises(UserError, match="share"):
        split_clips({"test_clips": ["walk"], "val_clips": ["walk"]})
