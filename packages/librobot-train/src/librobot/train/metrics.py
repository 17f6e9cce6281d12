"""metrics.jsonl: one JSON object per line, each line written with a single ``write`` on an
O_APPEND descriptor, so a crash leaves whole lines (a torn last line, possible only on power loss,
is skipped when reading). On resume the lines logged after the checkpoint are dropped: the resumed
run logs those steps again, and the file then reads as one uninterrupted run."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from librobot.core.checkpoint import atomic_write_text


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null marks a non-finite value
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a metrics file, skipping a torn or malformed line."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


class JsonlWriter:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd

    def append(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(_clean(dict(record)), sort_keys=False, allow_nan=False) + "\n").encode("utf-8")
        fd = self._open()
        written = os.write(fd, line)
        while written < len(line):  # regular files write all at once; this is for odd filesystems
            written += os.write(fd, line[written:])

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def truncate_after(self, step: int) -> int:
        """Atomically drop records with ``step`` > ``step``; return how many were dropped."""
        self.close()
        if not self.path.is_file():
            return 0
        kept, dropped = [], 0
        for record in read_jsonl(self.path):
            if int(record.get("step", 0)) <= step:
                kept.append(json.dumps(record, allow_nan=False))
            else:
                dropped += 1
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        return dropped

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
