"""The pointclouds domain: dense depth and per-pixel uncertainty from sparse points (LiDAR, ToF, SfM) seen
from a known camera, with or without an image, on open3d. See README.md in this folder."""
from core.domain import Domain
from domains.pointclouds.task import DepthTask


class PointcloudsDomain(Domain):
    name = "pointclouds"
    description = "sparse points (LiDAR, ToF, SfM) + camera [+ image] -> dense depth and uncertainty"
    tasks = (DepthTask,)
    requirements = ("open3d-cpu", "pymeshlab", "pyvista", "opencv-python", "scipy")

    def self_check(self) -> str:
        """open3d raycasting of a sphere against its analytic depth; the meshes and Aloe data present."""
        import numpy as np
        import open3d as o3d

        from domains.pointclouds.aloe import DATA_DIRS
        from domains.pointclouds.meshes import CATALOGUE, package_file
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(
            o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=60).translate([0, 0, 5])))
        rays = o3d.core.Tensor(np.array([[0, 0, 0, 0, 0, 1]], np.float32))
        depth = float(scene.cast_rays(rays)["t_hit"].numpy()[0])
        if abs(depth - 4.0) > 2e-3:
            raise RuntimeError(f"open3d raycasting is off: a unit sphere 5 m ahead is hit at {depth} m, not 4 m")
        meshes = sum(1 for m in CATALOGUE if package_file(m.package, m.path).exists())
        aloe = any((d / "aloeGT.png").exists() or (d / "aloeGT.png.gz").exists() for d in DATA_DIRS)
        return (f"raycast depth {depth:.4f} m (exact 4); {meshes} sample meshes; Aloe "
                f"{'found' if aloe else 'MISSING (apt-get install opencv-doc)'}")

    def check_config(self, values):
        from domains.pointclouds.settings import check_config
        return check_config(values)
