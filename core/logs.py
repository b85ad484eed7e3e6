"""Log set-up in one place: the command's process and every process it spawns (a spawned process starts
with an unconfigured root logger, so its log lines would be lost). No heavy imports: the CLI uses it before
parsing arguments is done."""
from __future__ import annotations

import logging

FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_logging(level: int) -> None:
    logging.basicConfig(level=level, format=FORMAT)
