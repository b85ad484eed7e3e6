"""The scanned meshes scenes are built from, as shipped in wheels (no download), grouped by object.

A group is one physical object (or one category: both airplanes), so splitting by group keeps every test
object out of training, also as another file of the same object (bunny.obj and bunny10k_textured.obj).
Primitives (boxes, cylinders, spheres, cones, tori from open3d) are generic clutter in every split.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import util
from pathlib import Path

import numpy as np
import open3d as o3d

from core.errors import UserError

MAX_TRIANGLES = 50_000   # simplified above this (the 166k-triangle face scan): scene building time grows with it


@dataclass(frozen=True)
class MeshSource:
    group: str
    package: str
    path: str            # inside the installed package


CATALOGUE = (
    MeshSource("bunny", "pymeshlab", "tests/sample_meshes/bunny.obj"),                 # Stanford scan
    MeshSource("bunny", "pymeshlab", "tests/sample_meshes/bunny10k_textured.obj"),
    MeshSource("airplane", "pymeshlab", "tests/sample_meshes/airplane.obj"),
    MeshSource("airplane", "pyvista", "examples/airplane.ply"),                         # another airplane model
    MeshSource("cow", "pymeshlab", "tests/sample_meshes/cow.obj"),
    MeshSource("bone", "pymeshlab", "tests/sample_meshes/bone.ply"),
    MeshSource("face", "pymeshlab", "tests/sample_meshes/rangemaps/face000.ply"),       # a single range scan
    MeshSource("ant", "pyvista", "examples/ant.ply"),
    MeshSource("nut", "pyvista", "examples/nut.ply"),
)
GROUPS = tuple(sorted({m.group for m in CATALOGUE}))
PRIMITIVES = ("box", "cylinder", "sphere", "cone", "torus")


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, located without importing the package (pyvista pulls vtk)."""
    spec = util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the {package} package is not installed; the pointclouds scenes use its sample meshes "
                        f"(install it: pip install -c env/constraints.txt {package})")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise UserError(f"{path}: expected sample mesh missing from the installed {package}; reinstall the pinned "
                        f"version (env/constraints.txt)")
    return path


def check_split(split: dict[str, list[str]]) -> list[str]:
    """Problems with a split-by-object assignment: unknown groups, a group in two splits, an empty split."""
    problems, seen = [], {}
    for name in ("train", "val", "test"):
        groups = split.get(name) or []
        if not groups:
            problems.append(f"scenes.split.{name}: needs at least one mesh group (known: {', '.join(GROUPS)})")
        for g in groups:
            if g not in GROUPS:
                problems.append(f"scenes.split.{name}: unknown mesh group {g!r}; known: {', '.join(GROUPS)}")
            elif g in seen:
                problems.append(f"scenes.split: group {g!r} is in both {seen[g]} and {name}; a test object must "
                                "never be seen in training")
            seen.setdefault(g, name)
    return problems


def sources_of(groups: list[str]) -> list[MeshSource]:
    return [m for m in CATALOGUE if m.group in groups]


@functools.lru_cache(maxsize=None)
def load_mesh(source: MeshSource) -> o3d.geometry.TriangleMesh:
    """The mesh centred at the origin with its largest bounding-box side = 1 (scenes scale it). Cached: a
    prepare run places each mesh in many scenes."""
    path = package_file(source.package, source.path)
    mesh = o3d.io.read_triangle_mesh(str(path))
    if len(mesh.triangles) == 0:
        raise UserError(f"{path}: open3d read no triangles from this sample mesh; reinstall {source.package}")
    mesh.remove_duplicated_vertices()
    mesh.remove_degenerate_triangles()
    lo, hi = mesh.get_min_bound(), mesh.get_max_bound()
    if len(mesh.triangles) > MAX_TRIANGLES:   # vertex clustering on a 1/100-of-the-size grid: 0.2 s, not the 9 s
        mesh = mesh.simplify_vertex_clustering(float(np.max(hi - lo)) / 100)   # of quadric decimation
    mesh.translate(-(lo + hi) / 2)
    mesh.scale(1.0 / float(np.max(hi - lo)), center=np.zeros(3))
    return mesh


def primitive(kind: str, rng: np.random.Generator) -> o3d.geometry.TriangleMesh:
    """A random-proportioned primitive with its largest side = 1, centred at the origin."""
    a, b = rng.uniform(0.3, 1.0, 2)
    if kind == "box":
        mesh = o3d.geometry.TriangleMesh.create_box(1.0, a, b)
    elif kind == "cylinder":
        mesh = o3d.geometry.TriangleMesh.create_cylinder(radius=0.5 * a, height=1.0, resolution=32)
    elif kind == "sphere":
        mesh = o3d.geometry.TriangleMesh.create_sphere(radius=0.5, resolution=24)
    elif kind == "cone":
        mesh = o3d.geometry.TriangleMesh.create_cone(radius=0.5 * a, height=1.0, resolution=32)
    elif kind == "torus":
        mesh = o3d.geometry.TriangleMesh.create_torus(torus_radius=0.35, tube_radius=0.15 * a + 0.03)
    else:
        raise ValueError(f"unknown primitive {kind!r}; known: {PRIMITIVES}")
    lo, hi = mesh.get_min_bound(), mesh.get_max_bound()
    mesh.translate(-(lo + hi) / 2)
    mesh.scale(1.0 / float(np.max(hi - lo)), center=np.zeros(3))
    return mesh
