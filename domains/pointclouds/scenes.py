"""Seeded indoor scenes from scanned meshes, rendered with open3d's RaycastingScene.

A room (floor, three walls, a ceiling in half the rooms: the others have open sky, i.e. pixels without a
return) of random size, scaled as a whole by a log-uniform factor (rooms of ~2-25 m: one model must serve
every scale); scanned meshes and primitives at random poses and sizes, resting on the floor; every surface
a procedural solid texture (plain, checker, stripes, smooth noise) on a random colour. The image is the
Lambertian shading of the true normals under a directional light with ray-cast shadows plus ambient light
and camera noise; depth is the camera-frame z of the first hit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import open3d as o3d

from domains.pointclouds.geometry import intrinsic_matrix, look_at, pinhole_rays
from domains.pointclouds.meshes import PRIMITIVES, MeshSource, load_mesh, primitive

TEXTURES = ("plain", "checker", "stripes", "noise")
SKY = np.array([0.62, 0.75, 0.9])


@dataclass
class Material:
    colour: np.ndarray       # RGB albedo in [0, 1]
    texture: str
    frequency: float         # cycles per scene unit
    contrast: float
    directions: np.ndarray   # [4, 3] unit vectors (stripes use the first; noise all four)
    phases: np.ndarray       # [4]

    def albedo(self, points: np.ndarray) -> np.ndarray:
        """[N, 3] albedo at world points: a solid texture (no UV maps needed, seamless on any mesh)."""
        w = 2 * np.pi * self.frequency
        if self.texture == "plain":
            pattern = np.zeros(len(points))
        elif self.texture == "checker":
            s = np.sin(w * points + self.phases[:3])
            pattern = np.sign(s[:, 0] * s[:, 1] * s[:, 2])
        elif self.texture == "stripes":
            pattern = np.sign(np.sin(w * points @ self.directions[0] + self.phases[0]))
        else:
            waves = np.sin(w * (points @ self.directions.T) * np.array([0.7, 1.0, 1.4, 2.1]) + self.phases)
            pattern = np.tanh(1.5 * waves.sum(1) / 2)
        return np.clip(self.colour[None] * (1 + self.contrast * pattern[:, None]), 0, 1)


def random_material(rng: np.random.Generator, scale: float, textures=TEXTURES) -> Material:
    dirs = rng.normal(size=(4, 3))
    return Material(colour=rng.uniform(0.15, 0.85, 3), texture=str(rng.choice(textures)),
                    frequency=float(rng.uniform(1.0, 6.0)) / scale, contrast=float(rng.uniform(0.2, 0.6)),
                    directions=dirs / np.linalg.norm(dirs, axis=1, keepdims=True), phases=rng.uniform(0, 6.3, 4))


@dataclass
class Scene:
    """A composed room: the raycasting scene, one material per geometry id, the light, the camera poses."""
    raycaster: o3d.t.geometry.RaycastingScene
    materials: list[Material]
    light: np.ndarray                  # unit vector towards the light (world)
    scale: float
    cameras: list[np.ndarray] = field(default_factory=list)   # world-to-camera extrinsics
    objects: list[str] = field(default_factory=list)          # what was placed (for the record)

    def add(self, mesh: o3d.geometry.TriangleMesh, material: Material) -> None:
        self.raycaster.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
        self.materials.append(material)

    def cast_camera(self, extrinsic: np.ndarray, origin_cam: np.ndarray,
                    dirs_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rays given in the camera frame (unit directions from `origin_cam`): (range [N], inf on a miss;
        |cos| of the incidence angle [N])."""
        rot, trans = extrinsic[:3, :3], extrinsic[:3, 3]
        origin = rot.T @ (origin_cam - trans)
        dirs = dirs_cam @ rot                      # = (R^T d^T)^T
        rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], 1).astype(np.float32)
        hit = self.raycaster.cast_rays(o3d.core.Tensor(rays))
        cos = np.abs(np.sum(hit["primitive_normals"].numpy() * dirs, 1))
        return hit["t_hit"].numpy().astype(np.float64), cos


def _box(lo, hi) -> o3d.geometry.TriangleMesh:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    box = o3d.geometry.TriangleMesh.create_box(*(hi - lo))
    return box.translate(lo)


def _random_rotation(rng: np.random.Generator, upright: bool) -> np.ndarray:
    yaw = rng.uniform(0, 2 * np.pi)
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    if upright:
        return rz
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return o3d.geometry.get_rotation_matrix_from_quaternion(q) @ rz


def compose(rng: np.random.Generator, sources: list[MeshSource], settings: Mapping[str, Any], n_views: int) -> Scene:
    """One room with `settings["objects"]` scanned meshes drawn from `sources` and some primitives, and
    `n_views` camera poses inside it."""
    lo_s, hi_s = settings["scale"]
    k = float(np.exp(rng.uniform(np.log(lo_s), np.log(hi_s))))
    width, depth, height = rng.uniform(4, 9) * k, rng.uniform(5, 12) * k, rng.uniform(2.4, 3.5) * k
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.3), rng.uniform(1.2, 3.0)])
    scene = Scene(o3d.t.geometry.RaycastingScene(), [], light / np.linalg.norm(light), k)
    t = 0.1 * k
    walls = [_box([-width / 2 - t, -2 * k, -t], [width / 2 + t, depth + t, 0]),           # floor
             _box([-width / 2 - t, depth, 0], [width / 2 + t, depth + t, height]),       # back wall
             _box([-width / 2 - t, -2 * k, 0], [-width / 2, depth, height]),             # left
             _box([width / 2, -2 * k, 0], [width / 2 + t, depth, height])]               # right
    if rng.random() < 0.5:
        walls.append(_box([-width / 2 - t, -2 * k, height], [width / 2 + t, depth + t, height + t]))
    for i, wall in enumerate(walls):   # the floor is textured; walls are often plain (textureless for SfM)
        scene.add(wall, random_material(rng, k, TEXTURES if i == 0 else ("plain", "plain", "noise", "stripes")))
    lo_o, hi_o = settings["objects"]
    lo_p, hi_p = settings["primitives"]
    placed = [("mesh", sources[i]) for i in rng.integers(0, len(sources), rng.integers(lo_o, hi_o + 1))]
    placed += [("primitive", str(rng.choice(PRIMITIVES))) for _ in range(rng.integers(lo_p, hi_p + 1))]
    centres = []
    for kind, what in placed:
        mesh = o3d.geometry.TriangleMesh(load_mesh(what)) if kind == "mesh" else primitive(what, rng)
        size = rng.uniform(0.4, 1.6) * k
        mesh.scale(size, center=np.zeros(3))
        mesh.rotate(_random_rotation(rng, upright=kind == "primitive" or rng.random() < 0.5), center=np.zeros(3))
        x = rng.uniform(-width / 2 + size / 2, width / 2 - size / 2) * 0.8
        y = rng.uniform(1.0 * k, 0.75 * depth)
        lift = rng.uniform(0.3, 1.2) * k if rng.random() < 0.15 else 0.0   # now and then a floating object
        mesh.translate([x, y, lift - mesh.get_min_bound()[2]])
        scene.add(mesh, random_material(rng, k))
        scene.objects.append(what.group if kind == "mesh" else what)
        centres.append(mesh.get_center())
    for _ in range(n_views):   # each view looks at one of the objects (rooms are mostly wall otherwise)
        eye = np.array([rng.uniform(-0.25, 0.25) * width, rng.uniform(-1.5, 0.0) * k, rng.uniform(0.8, 1.8) * k])
        target = centres[rng.integers(len(centres))] + rng.normal(0, 0.3 * k, 3)
        if target[1] - eye[1] < 0.5 * k:
            target[1] = eye[1] + 0.5 * k
        scene.cameras.append(look_at(eye, target))
    return scene


def camera_intrinsics(rng: np.random.Generator, height: int, width: int, vfov_deg) -> np.ndarray:
    """K of a camera with a vertical field of view drawn from `vfov_deg`, square pixels, the principal point
    within 2 % of the centre (as calibrated cameras have it)."""
    f = (height / 2) / np.tan(np.radians(rng.uniform(*vfov_deg)) / 2)
    cx = (width - 1) / 2 + rng.uniform(-0.02, 0.02) * width
    cy = (height - 1) / 2 + rng.uniform(-0.02, 0.02) * height
    return intrinsic_matrix(f, f, cx, cy)


def render(scene: Scene, K: np.ndarray, extrinsic: np.ndarray, height: int, width: int,
           rng: np.random.Generator, max_depth: float) -> tuple[np.ndarray, np.ndarray]:
    """(image [H, W, 3] uint8, depth [H, W] float32 with 0 where no surface within max_depth x scale)."""
    rays = pinhole_rays(K, extrinsic, height, width)
    hit = scene.raycaster.cast_rays(rays)
    t = hit["t_hit"].numpy()
    valid = np.isfinite(t) & (t <= max_depth * scene.scale)
    r = rays.numpy().reshape(-1, 6)
    dirs = r[:, 3:]
    points = r[:, :3] + dirs * np.where(np.isfinite(t), t, 0).reshape(-1, 1)
    normals = hit["primitive_normals"].numpy().reshape(-1, 3)
    flip = np.sum(normals * dirs, 1) > 0                     # face the camera: meshes are double-sided here
    normals[flip] *= -1
    geom = hit["geometry_ids"].numpy().reshape(-1)
    albedo = np.tile(SKY, (len(geom), 1))
    hit_mask = np.isfinite(t).reshape(-1)
    for gid in np.unique(geom[hit_mask]):
        sel = hit_mask & (geom == gid)
        albedo[sel] = scene.materials[gid].albedo(points[sel])
    # shadows: is the light visible from a point nudged off its surface?
    lit = np.zeros(len(geom), bool)
    idx = np.flatnonzero(hit_mask)
    shadow = np.concatenate([points[idx] + 1e-3 * scene.scale * normals[idx],
                             np.broadcast_to(scene.light, (len(idx), 3))], 1).astype(np.float32)
    lit[idx] = ~scene.raycaster.test_occlusions(o3d.core.Tensor(shadow)).numpy()
    diffuse = np.clip(normals @ scene.light, 0, None) * lit
    ambient = 0.35
    shade = np.where(hit_mask, ambient + (1 - ambient) * diffuse, 1.0)
    image = albedo * shade[:, None] + rng.normal(0, 0.01, albedo.shape)
    image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(height, width, 3)
    depth = np.where(valid, t, 0).astype(np.float32)
    return image, depth
