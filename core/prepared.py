"""The settings a prepared data folder was made with, as the base of the later steps' configs.

`prepare` writes `resolved_config.json` beside its files. `train` and `evaluate` on that folder start from
those settings (under what their own --config/--set give), so a user need not repeat the data settings on
every command, and a workflow that passes the same settings to every rule gets the same config as before.
A command that gives another value for a setting the prepared files depend on (the task's `data_settings`;
"task" among them where each task prepares its own files) is refused with both values named: the files would
silently disagree with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from core.errors import UserError
from core.io import read_json

RESOLVED_FILE = "resolved_config.json"


def prepared_config(prepared: Path, domain: str) -> tuple[dict[str, Any], str]:
    """(the prepared folder's resolved settings, a source label for the config's `sources`)."""
    path = Path(prepared) / RESOLVED_FILE
    if not path.exists():
        raise UserError(f"{prepared}: not a prepared data directory (no {RESOLVED_FILE}); run "
                        f"`sciformer prepare -d {domain} -o {prepared}` first")
    resolved = read_json(path)
    if not isinstance(resolved, dict) or not isinstance(resolved.get("config"), dict):
        raise UserError(f"{path}: not written by `sciformer prepare` (no resolved config); prepare again")
    if resolved.get("domain") not in (None, domain):
        raise UserError(f"{prepared}: these data were prepared for the {resolved['domain']} domain, not {domain}; "
                        f"use -d {resolved['domain']} or prepare {domain} data")
    return resolved["config"], f"{path} (the prepared data's settings)"


def leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a nested mapping's non-mapping values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(leaves(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _at(tree: Mapping[str, Any], dotted: str, missing: Any = None) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return missing
        node = node[part]
    return node


def governed(key: str, settings: tuple[str, ...]) -> bool:
    """Whether dotted `key` is one of `settings` or inside one of them."""
    return any(key == s or key.startswith(s + ".") for s in settings)


def check_against_prepared(cfg, base: Mapping[str, Any], task, prepared: Path) -> None:
    """Refuse a command whose --config/--set changes one of the task's `data_settings` from the value
    the prepared folder was made with (a value equal to the prepared one is fine: a workflow repeats them)."""
    values, missing = cfg.to_dict(), object()
    clashes = []
    for key in sorted(leaves(cfg.to_given())):
        if not governed(key, task.data_settings):
            continue
        was = _at(base, key, missing)
        now = _at(values, key)
        if was is not missing and was != now:
            clashes.append(f"{key}: this command gives {now!r}, the data were prepared with {was!r}")
    if clashes:
        raise UserError(f"{prepared}: " + "; ".join(clashes) + ". The prepared files follow their own settings: "
                        "leave these out here (train and evaluate read them from the prepared folder), or "
                        "prepare again into another folder with the new values")
