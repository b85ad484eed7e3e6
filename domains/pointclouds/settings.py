"""The domain's cross-field config rules (the core resolves and validates the rest against schema.json)."""
from __future__ import annotations

from typing import Any, Mapping

from domains.pointclouds.meshes import check_split

RANGES = ("scale", "objects", "primitives", "vfov_deg")


def check_config(values: Mapping[str, Any]) -> list[str]:
    """Rules a JSON schema cannot express: [min, max] pairs, the split by object, patch vs image size."""
    s = values["scenes"]
    problems = [f"scenes.{k}: [min, max] expected, got {s[k]}" for k in RANGES if s[k][0] > s[k][1]]
    problems += check_split(dict(s["split"]))
    p = values["model"]["patch"]
    if s["height"] < 2 * p or s["width"] < 2 * p:
        problems.append(f"scenes.height/width: {s['height']} x {s['width']} is too small for model.patch={p} "
                        "(need at least 2 patches per side)")
    return problems

