"""What a dataset format implements, and the lookup of formats by name or by sniffing a path.

A format reads a path into an ``EpisodeSource`` (episodes as ``librobot.data.episode.Episode``) and
writes an ``EpisodeStore`` out to a fresh path. Conversions always go through the store, so every
writer has one input type and statistics are computed once.

Writers embed ``librobot_meta`` (our feature specs, fps, robot type) where the format has room for
it (an attribute, a JSON file), so conversions between our formats keep feature names and shapes;
readers use it when present and fall back to the format's own conventions otherwise.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from librobot.core.specs import FeatureSpec
from librobot.data.episode import Episode
from librobot.data.errors import ConversionError

if TYPE_CHECKING:  # pragma: no cover
    from librobot.data.store.reader import EpisodeStore

META_KEY = "librobot_meta"
STAMP_FILE = ".librobot_conversion.json"


class EpisodeSource(ABC):
    """Episodes of a dataset in some format, read one at a time."""

    path: Path
    fps: float
    features: dict[str, FeatureSpec]
    robot_type: str | None = None
    format_name: str = ""

    @property
    @abstractmethod
    def num_episodes(self) -> int: ...

    @abstractmethod
    def episode(self, index: int) -> Episode: ...

    def __len__(self) -> int:
        return self.num_episodes

    def __iter__(self) -> Iterator[Episode]:
        for i in range(self.num_episodes):
            yield self.episode(i)

    def close(self) -> None:  # noqa: B027 - optional hook: most sources hold nothing open
        """Release open files."""

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format_name,
            "fps": self.fps,
            "robot_type": self.robot_type,
            "num_episodes": self.num_episodes,
            "features": {k: spec.to_dict() for k, spec in self.features.items()},
        }


class DatasetFormat(ABC):
    """A dataset format: ``open`` reads, ``write`` writes a store out, ``detect`` sniffs a path."""

    name: str = ""
    description: str = ""
    output: str = "dir"  # "dir" or "file": what ``write`` creates at its path

    @classmethod
    @abstractmethod
    def detect(cls, path: Path) -> bool: ...

    @abstractmethod
    def open(self, path: str | Path, **options: Any) -> EpisodeSource: ...

    @abstractmethod
    def write(self, store: EpisodeStore, path: str | Path, **options: Any) -> None:
        """Write every episode of ``store`` to ``path``, which does not exist yet."""

    def stamp(self, path: Path, document: dict[str, Any]) -> None:
        """Record how an output was made (``convert`` uses it to make re-runs idempotent)."""
        if not path.is_dir():
            raise NotImplementedError(f"format {self.name} writes a file; override stamp() to record conversions")
        (path / STAMP_FILE).write_text(json.dumps(document, indent=2, sort_keys=True))

    def read_stamp(self, path: Path) -> dict[str, Any] | None:
        file = path / STAMP_FILE
        try:
            return json.loads(file.read_text()) if path.is_dir() and file.is_file() else None
        except json.JSONDecodeError:
            return None


def meta_document(store: EpisodeStore) -> dict[str, Any]:
    """What writers embed so our readers restore specs exactly."""
    return {
        "fps": store.fps,
        "robot_type": store.robot_type,
        "features": {k: spec.to_dict() for k, spec in store.features.items()},
    }


def features_from_meta(meta: Mapping[str, Any] | None) -> dict[str, FeatureSpec] | None:
    if not meta or "features" not in meta:
        return None
    return {k: FeatureSpec.from_dict(v) for k, v in meta["features"].items()}


def get_format(name: str) -> DatasetFormat:
    """The format registered as ``name`` (or an alias), e.g. ``get_format("lerobot-v3")``."""
    from librobot.core.registry import get_registry

    return get_registry("dataset_format").create(name)


def format_names() -> list[str]:
    from librobot.core.registry import get_registry

    return get_registry("dataset_format").list()


def detect_format(path: str | Path) -> str:
    """The name of the format at ``path``, found by sniffing its files."""
    from librobot.core.registry import get_registry

    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path} does not exist")
    registry = get_registry("dataset_format")
    matches = [name for name in registry.list() if registry.get(name).detect(path)]
    if len(matches) != 1:
        found = f"it looks like each of {matches}" if matches else "no known format matches it"
        raise ConversionError(
            f"cannot tell the format of {path}: {found}; name it with --from (one of {registry.list()})"
        )
    return matches[0]
