"""Progress that reads well everywhere: a tqdm bar on a terminal; elsewhere (Snakemake logs, files, CI) one
plain log line every few seconds instead of thousands of carriage-return updates."""
from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm

LINE_EVERY_S = 10.0   # a log line at most this often when not on a terminal


class Progress:
    """`update(n)`, `set_postfix(**values)`, `close()`; as a context manager too."""

    def __init__(self, total: int | None, desc: str, unit: str, enabled: bool = True, initial: int = 0,
                 stream=None, every_s: float = LINE_EVERY_S, lines_only: bool = False):
        """lines_only: plain lines even on a terminal (parallel worker processes share one: their bars would
        overwrite each other)."""
        stream = stream or sys.stderr
        self.desc, self.unit, self.total, self.done = desc, unit, total, initial
        self.enabled, self.every_s, self.postfix, self.stream = enabled, every_s, "", stream
        self.terminal = enabled and not lines_only and hasattr(stream, "isatty") and stream.isatty()
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, file=stream) \
            if self.terminal else None
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self.last >= self.every_s:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())
        if self.bar is not None:
            self.bar.set_postfix(values)

    def _line(self) -> None:
        self.last = time.monotonic()
        rate = self.done / max(self.last - self.start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        print(f"{self.desc}: {self.done}{of} {self.unit} ({rate:.1f} {self.unit}/s) {self.postfix}".rstrip(),
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.done:
            self._line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
