"""core.progress: a bar on a terminal only; plain lines elsewhere and in parallel workers (`lines_only`)."""
from __future__ import annotations

import io

from core.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(stream, **kw) -> str:
    with Progress(5, "train member_1", "step", stream=stream, every_s=0.0, **kw) as bar:
        for _ in range(5):
            bar.update()
    return stream.getvalue()


def test_plain_lines_off_a_terminal():
    lines = run(io.StringIO()).splitlines()
    assert "\r" not in "".join(lines) and lines[-1].startswith("train member_1: 5/5 step (")


def test_bar_on_a_terminal_and_lines_when_asked():
    assert "\r" in run(Terminal())                      # tqdm redraws in place
    text = run(Terminal(), lines_only=True)             # a worker of `train -j`: lines even on a terminal
    assert "\r" not in text and text.splitlines()[-1].startswith("train member_1: 5/5 step (")


def test_disabled_prints_nothing():
    assert run(io.StringIO(), enabled=False) == "" and run(Terminal(), enabled=False) == ""
