"""Output folders written as a set (`prepare -o`, `report -o`): the command writes into a staging folder inside
the output folder (same filesystem, also on a mount point or under a read-only parent), then moves each entry
into place, the completion file last. A marker file lists what the command wrote, so a rerun removes exactly
its own earlier entries and never a file it did not write (a user's data kept in the folder, another step's
outputs): an entry of the same name that the command did not write stops the run before anything moves.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from core.errors import UserError


def written_before(out: Path, marker: str) -> list[str] | None:
    """The entries an earlier run recorded in `marker` (None when there is no marker)."""
    path = Path(out) / marker
    if not path.exists():
        return None
    try:
        names = json.loads(path.read_text())
        return [str(n) for n in names] if isinstance(names, list) else []
    except (ValueError, UnicodeDecodeError):
        return []


def staging(out: Path) -> Path:
    """A fresh staging folder inside `out` (created if missing)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; -o names a folder here")
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=out))


def install(stage: Path, out: Path, marker: str, last: str | None = None, legacy: list[str] | None = None) -> None:
    """Move the staged entries into `out`: an earlier run's entries (its marker's list, else `legacy`) that
    this run did not write again are removed, the completion file `last` is removed first and moved in last
    (a reader never sees a mix marked complete), and the marker records this run's entries."""
    stage, out = Path(stage), Path(out)
    new = sorted(p.name for p in stage.iterdir())
    before = written_before(out, marker)
    before = set(legacy or []) if before is None else set(before)
    taken = [n for n in new if (out / n).exists() and n not in before and n != marker]
    if taken:
        raise UserError(f"{out}: {', '.join(taken[:5])} already there and not written by an earlier run of this "
                        "command; move them or choose another -o (nothing was changed)")
    if last and (out / last).exists():
        (out / last).unlink()
    for name in sorted(before - set(new) - {marker}):
        _remove(out / name)
    for name in new:
        if name == last:
            continue
        _remove(out / name)
        os.replace(stage / name, out / name)
    tmp = out / f".{marker}.tmp"
    tmp.write_text(json.dumps(new + [marker]))
    os.replace(tmp, out / marker)
    if last:
        os.replace(stage / last, out / last)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
