"""The poses domain: 2D keypoints (or video) -> 3D human pose (task `lift`). The Domain and its task are in
`domain.py` and `task.py`; the science as plain functions in the other modules (`pipeline`, `training`,
`evaluation`, `readers`, `lifting`, `writers`, `report`)."""
from domains.poses.domain import PosesDomain

__all__ = ["PosesDomain"]
