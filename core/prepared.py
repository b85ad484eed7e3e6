"""The settings a prepared data folder was made with, as the base of the later steps' configs.

`prepare` writes `resolved_config.json` beside its files. `train` and `evaluate` on that folder start from
those settings (under what their own --config/--set give; the `train` and `encoder` sections excepted: those
are the training command's own), so a user need not repeat the data settings on every command, and a
workflow that passes the same settings to every rule gets the same config as before.
A command that gives another value for a setting the prepared files depend on (the task's `data_settings`;
"task" among them where each task prepares its own files) is refused with both values named: the files would
silently disagree with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from core.config import leaves, value_at, within
from core.errors import UserError
from core.io import file_sha256, read_json

RESOLVED_FILE = "resolved_config.json"
COMMAND_OWN = ("train", "encoder")   # sections train/evaluate never inherit from the prepared folder
MARKER = ".sciformer-prepared"   # what prepare wrote (core/folders.py); stays when a workflow deletes
                                 # resolved_config.json (its output) to rerun


def read_resolved(prepared: Path, domain: str | None = None) -> dict[str, Any]:
    """The prepared folder's resolved_config.json, refused clearly when the folder is not a prepared one."""
    path = Path(prepared) / RESOLVED_FILE
    if not path.exists():
        raise UserError(f"{prepared}: not a prepared data directory (no {RESOLVED_FILE}); run "
                        f"`sciformer prepare{f' -d {domain}' if domain else ''} -o {prepared}` first")
    resolved = read_json(path)
    if not isinstance(resolved, dict) or not isinstance(resolved.get("config"), dict):
        raise UserError(f"{path}: not written by `sciformer prepare` (no resolved config); prepare again")
    return resolved


def prepared_config(prepared: Path, domain: str) -> tuple[dict[str, Any], str]:
    """(the prepared folder's resolved settings, a source label for the config's `sources`)."""
    path = Path(prepared) / RESOLVED_FILE
    resolved = read_resolved(prepared, domain)
    if resolved.get("domain") not in (None, domain):
        raise UserError(f"{prepared}: these data were prepared for the {resolved['domain']} domain, not {domain}; "
                        f"use -d {resolved['domain']} or prepare {domain} data")
    # how to train is the training command's own business: an earlier prepare's train.*/encoder.* (a
    # benchmark reusing a prepared folder) must not leak into it
    base = {k: v for k, v in resolved["config"].items() if k not in COMMAND_OWN}
    return base, f"{path} (the prepared data's settings, without {'/'.join(COMMAND_OWN)})"


def check_against_prepared(cfg, base: Mapping[str, Any], task, prepared: Path) -> None:
    """Refuse a command whose --config/--set changes one of the task's `data_settings` from the value
    the prepared folder was made with (a value equal to the prepared one is fine: a workflow repeats them)."""
    values, missing = cfg.to_dict(), object()
    clashes = []
    for key in sorted(leaves(cfg.to_given())):
        if not within(key, task.data_settings):
            continue
        was = value_at(base, key, missing)
        now = value_at(values, key)
        if was is not missing and was != now:
            clashes.append(f"{key}: this command gives {now!r}, the data were prepared with {was!r}")
    if clashes:
        raise UserError(f"{prepared}: " + "; ".join(clashes) + ". The prepared files follow their own settings: "
                        "leave these out here (train and evaluate read them from the prepared folder), or "
                        "prepare again into another folder with the new values")


# -- checking a prepared folder before use -------------------------------------------------------------------
def file_hashes(folder: Path) -> dict[str, str]:
    """{path relative to folder: sha256} of every file in it (what prepare wrote)."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def legacy_entries(out: Path) -> list[str]:
    """What a prepare from before the marker wrote into `out`: the files its resolved_config.json records
    (none when it recorded none: those files are then kept, and a name clash stops the run)."""
    path = Path(out) / RESOLVED_FILE
    if not path.exists():
        return []
    files = (read_json(path).get("prepared_files") or {})
    return sorted({n.split("/")[0] for n in files} | {RESOLVED_FILE})


def recorded_hashes(prepared: Path) -> dict[str, str]:
    """What `verified_hashes` returns, without re-reading the files (a training worker, after the command
    checked them)."""
    resolved = read_json(Path(prepared) / RESOLVED_FILE)
    return {**resolved.get("data_hashes", {}),
            **{f"prepared/{n}": d for n, d in (resolved.get("prepared_files") or {}).items()}}


def verified_hashes(prepared: Path) -> dict[str, str]:
    """The prepared folder's recorded hashes, after checking that every file prepare wrote is still there with
    the same content: {source: sha256} of the inputs and {prepared/<file>: sha256} of the files (what a trained
    member depends on and what outputs record). A folder from before files were recorded is trusted as is."""
    prepared = Path(prepared)
    files = read_resolved(prepared).get("prepared_files") or {}
    for name, digest in files.items():
        f = prepared / name
        if not f.exists() or file_sha256(f) != digest:
            what = "is missing" if not f.exists() else "changed"
            raise UserError(f"{f} {what} since prepare wrote it; prepare again (`sciformer prepare -o {prepared}` "
                            "with the same settings) so the data and their recorded hashes agree")
    return recorded_hashes(prepared)
