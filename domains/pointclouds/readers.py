"""New data for prediction: point cloud files (open3d: .ply .pcd .xyz .pts), camera JSON files (schema
below), optional images, CSV manifests of many frames. Everything is checked before a model loads;
problems of one frame become its status (or an error naming the file and the fix).

Inputs (`-i`):
- a cloud file: its camera is `<stem>.json` beside it (or `camera.json` in its folder), its image (optional)
  `<stem>.png/.jpg/.jpeg`;
- a folder: every cloud file in it, paired the same way;
- a CSV manifest: columns `cloud` (or `path`, the core's manifest column), `camera`, optional `image` and
  `id`; relative paths are relative to the manifest's folder.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import numpy as np
import open3d as o3d
import pandas as pd
from PIL import Image

from core.errors import UserError
from core.readers import separator_hint
from domains.pointclouds.geometry import intrinsic_matrix

CLOUD_FORMATS = (".ply", ".pcd", ".xyz", ".pts", ".xyzn", ".xyzrgb")
IMAGE_FORMATS = (".png", ".jpg", ".jpeg")
MANIFEST_COLUMNS = ("cloud", "camera")
CAMERA_SCHEMA = {
    "type": "object",
    "required": ["fx", "fy", "cx", "cy", "width", "height"],
    "additionalProperties": False,
    "properties": {
        "fx": {"type": "number", "exclusiveMinimum": 0}, "fy": {"type": "number", "exclusiveMinimum": 0},
        "cx": {"type": "number"}, "cy": {"type": "number"},
        "width": {"type": "integer", "minimum": 2, "maximum": 16384},
        "height": {"type": "integer", "minimum": 2, "maximum": 16384},
        "extrinsics": {"type": "array", "minItems": 4, "maxItems": 4,
                       "items": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"}}},
        "extrinsics_convention": {"enum": ["world_to_camera", "camera_to_world"]},
    },
}


@dataclass
class Camera:
    K: np.ndarray
    width: int
    height: int
    extrinsic: np.ndarray   # world to camera


@dataclass
class FrameSpec:
    id: str
    cloud: Path
    camera: Path | None
    image: Path | None
    fields: dict[str, str] = field(default_factory=dict)   # a manifest row's other columns (passed through)


def read_camera(path: Path) -> Camera:
    """A camera JSON file, validated: intrinsics in pixels, optional 4 x 4 extrinsics (default: the cloud
    is already in the camera frame, x right, y down, z forward)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise UserError(f"{path}: camera file not found; write fx, fy, cx, cy, width, height as JSON") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a camera JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); the camera file is an object like "
                        '{"fx": 525, "fy": 525, "cx": 319.5, "cy": 239.5, "width": 640, "height": 480}') from None
    problems = [f"{'.'.join(map(str, e.absolute_path)) or 'camera'}: {e.message}"
                for e in jsonschema.Draft202012Validator(CAMERA_SCHEMA).iter_errors(data)]
    if not problems:
        numbers = [data[k] for k in ("fx", "fy", "cx", "cy")] + sum(data.get("extrinsics", []), [])
        if not np.isfinite(np.asarray(numbers, float)).all():
            problems.append("fx, fy, cx, cy and extrinsics must be finite numbers (found Infinity or NaN)")
    if not problems:
        if not 0 <= data["cx"] <= data["width"] or not 0 <= data["cy"] <= data["height"]:
            problems.append(f"cx, cy = {data['cx']}, {data['cy']} lie outside the {data['width']} x {data['height']} "
                            "image; the principal point is in pixels from the top-left corner")
        ext = np.array(data.get("extrinsics", np.eye(4).tolist()), float)
        rot = ext[:3, :3]
        if not np.allclose(ext[3], [0, 0, 0, 1], atol=1e-6) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3):
            problems.append("extrinsics: not a rigid transform (rotation rows must be orthonormal, last row 0 0 0 1)")
    if problems:
        raise UserError(f"{path}: invalid camera: " + "; ".join(problems))
    if data.get("extrinsics_convention") == "camera_to_world":
        ext = np.linalg.inv(ext)
    return Camera(intrinsic_matrix(data["fx"], data["fy"], data["cx"], data["cy"]), int(data["width"]),
                  int(data["height"]), ext)


def _text_rows(path: Path) -> int:
    lines = [ln for ln in path.read_text(encoding="utf-8-sig", errors="replace").splitlines() if ln.strip()]
    return len(lines) - 1 if path.suffix.lower() == ".pts" else len(lines)   # .pts: a count line first


PLY_SIZES = {"char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
             "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


def ply_shortfall(path: Path) -> str | None:
    """Why a PLY file holds fewer vertices than its header declares (open3d then returns the declared count
    with uninitialised values), or None. Checks the vertex element when it comes first (as writers put it)."""
    with open(path, "rb") as f:
        head = f.read(65536)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        return None
    lines = head[:end].decode("ascii", "replace").splitlines()
    fmt = next((ln.split()[1] for ln in lines if ln.startswith("format ")), "ascii")
    elements = [ln.split() for ln in lines if ln.startswith(("element ", "property "))]
    if not elements or elements[0][:2] != ["element", "vertex"]:
        return None
    count, props = int(elements[0][2]), []
    for parts in elements[1:]:
        if parts[0] == "element":
            break
        props.append(parts)
    body = path.stat().st_size - (end + head[end:].find(b"\n") + 1)
    if fmt == "ascii":
        with open(path, "rb") as f:
            f.seek(end)
            rows = sum(1 for ln in f.read().split(b"\n")[1:] if ln.strip())
        return f"the header declares {count} vertices but {rows} data lines follow" if rows < count else None
    if any(p[1] == "list" or p[1] not in PLY_SIZES for p in props):
        return None
    need = count * sum(PLY_SIZES[p[1]] for p in props)
    return f"the header declares {count} vertices ({need} bytes) but only {body} bytes follow" if body < need else None


def read_cloud(path: Path) -> tuple[np.ndarray, int]:
    """(finite points [N, 3] float64, number of non-finite points dropped). Unreadable, corrupt, empty or
    unsupported files raise UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: point cloud file not found")
    if path.suffix.lower() not in CLOUD_FORMATS:
        raise UserError(f"{path}: unsupported point cloud format {path.suffix or '(none)'}; use one of "
                        f"{', '.join(CLOUD_FORMATS)} (convert with open3d or CloudCompare)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty (0 bytes)")
    if path.suffix.lower() == ".ply" and (short := ply_shortfall(path)):
        raise UserError(f"{path}: truncated or corrupt PLY: {short}; export the cloud again")
    cloud = o3d.io.read_point_cloud(str(path), remove_nan_points=False, remove_infinite_points=False)
    points = np.asarray(cloud.points)
    if len(points) == 0:
        raise UserError(f"{path}: no points could be read (corrupt file, wrong header, or an empty cloud); "
                        "check it opens in a viewer (e.g. open3d.visualization.draw_geometries)")
    if path.suffix.lower() in (".xyz", ".pts", ".xyzn", ".xyzrgb") and _text_rows(path) != len(points):
        raise UserError(f"{path}: open3d read {len(points)} points but the file has {_text_rows(path)} data lines; "
                        "a line is not 'x y z ...' numbers (fix or remove it)")
    finite = np.isfinite(points).all(1)
    return points[finite], int((~finite).sum())


def read_image(path: Path, camera: Camera) -> np.ndarray:
    """RGB uint8 [H, W, 3] matching the camera's width x height."""
    try:
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise UserError(f"{path}: image file not found") from None
    except Exception as exc:
        raise UserError(f"{path}: cannot read this image ({type(exc).__name__}); use PNG or JPEG") from None
    if image.shape[:2] != (camera.height, camera.width):
        raise UserError(f"{path}: image is {image.shape[1]} x {image.shape[0]} but the camera says "
                        f"{camera.width} x {camera.height}; the intrinsics must belong to this image size "
                        "(scale fx, fy, cx, cy with the image)")
    return image


def _beside(cloud: Path, suffixes) -> Path | None:
    for s in suffixes:
        if cloud.with_suffix(s).exists():
            return cloud.with_suffix(s)
    return None


def _spec(cloud: Path, ident: str | None = None) -> FrameSpec:
    camera = _beside(cloud, (".json",)) or (cloud.parent / "camera.json" if (cloud.parent / "camera.json").exists()
                                            else None)
    return FrameSpec(ident or cloud.stem, cloud, camera, _beside(cloud, IMAGE_FORMATS))


def plan(input_path: Path) -> list[FrameSpec]:
    """The frames an input names (structure checked; file contents are checked per frame)."""
    path = Path(input_path)
    if not path.exists():
        raise UserError(f"{path}: input not found; pass a point cloud file, a folder of them or a CSV manifest")
    if path.is_dir():
        clouds = sorted(p for p in path.iterdir() if p.suffix.lower() in CLOUD_FORMATS)
        if not clouds:
            raise UserError(f"{path}: no point cloud files ({', '.join(CLOUD_FORMATS)}) in this folder")
        stems = [c.stem for c in clouds]   # good.ply and good.pcd: ids by file name, so no output overwrites another
        return [_spec(c, c.name if stems.count(c.stem) > 1 else None) for c in clouds]
    if path.suffix.lower() == ".csv":
        return _manifest(path)
    if path.suffix.lower() not in CLOUD_FORMATS:
        raise UserError(f"{path}: unsupported input {path.suffix or '(no extension)'}; pass a point cloud "
                        f"({', '.join(CLOUD_FORMATS)}), a folder of them or a CSV manifest")
    spec = _spec(path)
    if spec.camera is None:
        raise UserError(f"{path}: no camera file; put the intrinsics in {path.with_suffix('.json').name} or "
                        "camera.json beside the cloud")
    return [spec]


def _manifest(path: Path) -> list[FrameSpec]:
    try:
        with warnings.catch_warnings():   # a row with more fields than the header: an error, not a shifted index
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the manifest is empty; it needs a header (cloud,camera[,image][,id]) "
                        "and rows") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV ({exc}); every row needs as many fields as the header") from None
    if "cloud" not in table.columns and "path" in table.columns:
        table = table.rename(columns={"path": "cloud"})
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing and {"x", "y", "z"} <= {str(c).lower() for c in table.columns}:   # a cloud saved as CSV
        raise UserError(f"{path}: a .csv input is a manifest (cloud,camera[,image][,id] per frame), but this one "
                        "holds x, y, z points; save the points as .xyz (space-separated, no header), .pts, .ply or "
                        ".pcd and give that file with its camera JSON")
    if missing:
        raise UserError(f"{path}: manifest lacks column(s) {missing}; it needs cloud,camera and optionally "
                        f"image,id (found: {', '.join(table.columns)}){separator_hint(table.columns)}")
    if table.empty:
        raise UserError(f"{path}: the manifest has no rows")
    ids = table["id"] if "id" in table.columns else pd.Series([f"row{i + 1}" for i in range(len(table))])
    if ids.duplicated().any():
        raise UserError(f"{path}: duplicate id(s) {sorted(set(ids[ids.duplicated()]))}; ids name the output files")
    odd = [i for i in ids if not i or i.startswith(".") or "/" in i or "\\" in i]
    if odd:
        raise UserError(f"{path}: id(s) {odd[:5]} cannot name output files; use ids without slashes or a leading dot")
    root = path.parent
    resolve = lambda v: (root / v) if v else None   # noqa: E731
    own = {*MANIFEST_COLUMNS, "image", "id"}
    others = [c for c in table.columns if c not in own]
    return [FrameSpec(str(ident), resolve(row["cloud"]), resolve(row["camera"]),
                      resolve(row.get("image", "")) if "image" in table.columns else None,
                      {c: row[c] for c in others})
            for ident, (_, row) in zip(ids, table.iterrows())]
