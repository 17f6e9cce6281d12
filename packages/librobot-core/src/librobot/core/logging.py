"""Logging on the ``librobot`` logger (rich console + optional file) and progress bars."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
ROOT = "librobot"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OWNED = "_librobot"  # attribute that marks the handlers configure_logging installed (and may replace)


def get_logger(name: str = ROOT) -> logging.Logger:
    """A logger under ``librobot`` (``get_logger("train")`` → ``librobot.train``)."""
    return logging.getLogger(name if name == ROOT or name.startswith(ROOT + ".") else f"{ROOT}.{name}")


def configure_logging(
    level: str | int = "INFO", file: str | Path | None = None, *, rich: bool = True
) -> logging.Logger:
    """Send ``librobot`` logs to the console (rich when available and a terminal) and to ``file``.

    Calling it again replaces the handlers it installed before, so it is safe to call per run.
    """
    logger = logging.getLogger(ROOT)
    logger.setLevel(level)
    for handler in [h for h in logger.handlers if getattr(h, _OWNED, False)]:
        logger.removeHandler(handler)
        handler.close()
    console: logging.Handler
    if rich and sys.stderr.isatty():
        from rich.logging import RichHandler

        console = RichHandler(show_path=False, rich_tracebacks=True)
        console.setFormatter(logging.Formatter("%(message)s"))
    else:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter(_FORMAT))
    setattr(console, _OWNED, True)
    logger.addHandler(console)
    if file is not None:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        setattr(file_handler, _OWNED, True)
        logger.addHandler(file_handler)
    logger.propagate = False
    return logger


def progress_enabled() -> bool:
    """Progress bars show on a terminal unless LIBROBOT_PROGRESS=0; LIBROBOT_PROGRESS=1 forces them."""
    setting = os.environ.get("LIBROBOT_PROGRESS")
    if setting is not None:
        return setting not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def track(iterable: Iterable[T], *, total: int | None = None, description: str = "working") -> Iterator[T]:
    """Iterate with a rich progress bar (ETA, rate) when progress is enabled; plainly otherwise."""
    if not progress_enabled():
        yield from iterable
        return
    from rich.progress import track as rich_track

    yield from rich_track(iterable, total=total, description=description, transient=False)
