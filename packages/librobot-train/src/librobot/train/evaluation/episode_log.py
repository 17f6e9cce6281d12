"""The episode log of a closed-loop evaluation: one JSON line per finished episode, written as it
finishes, so an evaluation that dies (a signal, memory, the end of a session) keeps what it did and
a second call with the same settings runs only the episodes still missing.

The first line holds the settings; a log written with other settings is refused rather than mixed
in. Each episode line carries the evaluation's running totals at that moment (seconds, env steps,
policy calls, chunks), so a resumed report counts the work that produced its episodes, not the
part lost at the crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from librobot.core.errors import ConfigError
from librobot.train.metrics import JsonlWriter, read_jsonl


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, odd objects their text)."""
    return json.loads(json.dumps(value, default=str))


class EpisodeLog:
    """Append-only record of finished episodes (see the module docstring)."""

    def __init__(self, path: str | Path, settings: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.settings = _plain(dict(settings))
        self._writer: JsonlWriter | None = None

    def load(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(episodes already finished, the running totals when the last of them finished)."""
        records = list(read_jsonl(self.path))  # a torn last line (power loss) is skipped
        if not records:
            return [], {}
        written = records[0].get("settings")
        if written != self.settings:
            differ = sorted(
                k for k in {*self.settings, *(written or {})} if (written or {}).get(k) != self.settings.get(k)
            )
            raise ConfigError(
                f"{self.path} holds episodes of an evaluation with other settings ({', '.join(differ)} differ); "
                "delete it to start over, or evaluate with the settings it was written with"
            )
        episodes = [r for r in records[1:] if "episode" in r]
        return [r["episode"] for r in episodes], (episodes[-1]["totals"] if episodes else {})

    def start_new(self) -> None:
        """Begin an empty log (replacing any earlier one) with the settings line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self.append({"settings": self.settings})

    def append(self, record: Mapping[str, Any]) -> None:
        if self._writer is None:
            self._writer = JsonlWriter(self.path)
        self._writer.append(record)
        self._writer.sync()  # an episode costs seconds; an fsync is cheap next to losing it

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
