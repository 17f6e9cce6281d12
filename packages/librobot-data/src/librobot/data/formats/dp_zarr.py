"""Diffusion Policy replay buffers: a zarr group (format 2, as DP's zarr 2 writes it)::

    data/<key>          [N, ...]  all episodes concatenated (e.g. img [N, 96, 96, 3], state, action)
    meta/episode_ends   [E]       exclusive end of each episode

Mapping: image arrays (4-D uint8, or 4-D float holding whole numbers 0-255 as in Push-T) →
``observation.images.<key>``; ``state`` → ``observation.state``; ``action`` → ``action``; anything
else → ``observation.<key>``. DP has no tasks or frame rate: we store ``librobot_tasks`` and
``librobot_meta`` attributes and read them when present (fps otherwise from the ``fps`` option,
default 10 Hz as in Push-T).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.logging import track
from librobot.core.specs import FeatureSpec
from librobot.data.episode import IMAGE_PREFIX, Episode, is_image_key
from librobot.data.errors import DataFormatError
from librobot.data.formats.base import META_KEY, DatasetFormat, EpisodeSource, features_from_meta, meta_document
from librobot.data.store.layout import RECORD_FILE

_NAMES = {"state": "observation.state", "action": "action"}


def _is_image_array(array: Any) -> bool:
    return len(array.shape) == 4 and array.shape[-1] in (1, 3, 4) and array.dtype.kind in "uf"


class DPZarrSource(EpisodeSource):
    format_name = "dp-zarr"

    def __init__(self, path: str | Path, *, fps: float | None = None, task: str = "") -> None:
        import zarr

        self.path = Path(path)
        try:
            root = zarr.open_group(str(self.path), mode="r")
        except Exception as exc:
            raise DataFormatError(f"{self.path}: cannot open as a zarr group ({exc})") from exc
        for name in ("data", "meta/episode_ends"):
            if name not in root:
                raise DataFormatError(f"{self.path}: '{name}' is missing; not a Diffusion Policy replay buffer")
        meta = dict(root.attrs.get(META_KEY) or {})
        self.fps = float(fps or meta.get("fps") or 10.0)
        self.robot_type = meta.get("robot_type")
        self._tasks = list(root.attrs.get("librobot_tasks") or [])
        self.default_task = task
        self.ends = np.asarray(root["meta/episode_ends"][:], dtype=np.int64)
        if self.ends.size and (np.any(np.diff(self.ends) <= 0) or self.ends[0] <= 0):
            raise DataFormatError(
                f"{self.path}: meta/episode_ends is not strictly increasing: {self.ends[:8].tolist()}..."
            )
        self._arrays = {name: root[f"data/{name}"] for name in root["data"].array_keys()}
        total = int(self.ends[-1]) if self.ends.size else 0
        for name, array in self._arrays.items():
            if array.shape[0] != total:
                raise DataFormatError(
                    f"{self.path}: data/{name} has {array.shape[0]} frames but episode_ends ends at {total}"
                )
        self._paths: dict[str, str] = meta.get("zarr_keys") or self._default_paths()
        self.features = features_from_meta(meta) or self._infer()

    def _default_paths(self) -> dict[str, str]:
        out = {}
        for name, array in self._arrays.items():
            key = IMAGE_PREFIX + name if _is_image_array(array) else _NAMES.get(name, f"observation.{name}")
            out[key] = name
        return out

    def _infer(self) -> dict[str, FeatureSpec]:
        features = {}
        for key, name in self._paths.items():
            array = self._arrays[name]
            if is_image_key(key):
                h, w, c = array.shape[1:]
                features[key] = FeatureSpec(name=key, shape=(c, h, w), dtype="uint8", kind="image")
            else:
                features[key] = FeatureSpec(name=key, shape=tuple(array.shape[1:]), dtype=str(array.dtype))
        return features

    @property
    def num_episodes(self) -> int:
        return int(self.ends.size)

    def episode(self, index: int) -> Episode:
        start = int(self.ends[index - 1]) if index > 0 else 0
        stop = int(self.ends[index])
        frames = {}
        for key, name in self._paths.items():
            if name not in self._arrays:
                raise DataFormatError(f"{self.path}: data/{name} is missing")
            value = np.asarray(self._arrays[name][start:stop])
            if is_image_key(key) and value.dtype != np.uint8:
                if value.min() < 0 or value.max() > 255 or not np.array_equal(value, np.round(value)):
                    raise DataFormatError(
                        f"{self.path}: data/{name} holds {value.dtype} images that are not whole numbers in 0-255"
                    )
                value = value.astype(np.uint8)
            frames[key] = value.astype(self.features[key].dtype, copy=False)
        task = self._tasks[index] if index < len(self._tasks) else self.default_task
        return Episode(frames=frames, task=task, fps=self.fps, metadata={"episode_index": index})


class DPZarrFormat(DatasetFormat):
    name = "dp-zarr"
    description = "Diffusion Policy zarr replay buffer (data/*, meta/episode_ends)"

    @classmethod
    def detect(cls, path: Path) -> bool:
        if not path.is_dir() or (path / RECORD_FILE).is_file():
            return False
        has_group = (path / ".zgroup").is_file() or (path / "zarr.json").is_file()
        ends = path / "meta" / "episode_ends"
        return has_group and (path / "data").is_dir() and ends.is_dir()

    def open(self, path: str | Path, *, fps: float | None = None, task: str = "") -> DPZarrSource:
        return DPZarrSource(path, fps=fps, task=task)

    def write(self, store: Any, path: str | Path, *, chunk_frames: int = 100) -> None:
        """Zarr format 2 with Blosc, so Diffusion Policy's own (zarr 2) code reads it."""
        import numcodecs
        import zarr

        root = zarr.open_group(str(path), mode="w-", zarr_format=2)
        paths = {}
        for key in store.features:
            if is_image_key(key):
                paths[key] = key[len(IMAGE_PREFIX) :]
            elif key in _NAMES.values():
                paths[key] = next(n for n, k in _NAMES.items() if k == key)
            else:
                paths[key] = key.removeprefix("observation.")
        arrays = {}
        for key, spec in store.features.items():
            shape = (spec.shape[1], spec.shape[2], spec.shape[0]) if is_image_key(key) else spec.shape
            arrays[key] = root.create_array(
                f"data/{paths[key]}",
                shape=(store.num_frames, *shape),
                chunks=(chunk_frames, *shape),
                dtype=spec.dtype,
                compressors=numcodecs.Blosc(
                    cname="zstd",
                    clevel=3,
                    shuffle=numcodecs.Blosc.NOSHUFFLE if is_image_key(key) else numcodecs.Blosc.SHUFFLE,
                ),
            )
        tasks = []
        for e in track(range(store.num_episodes), total=store.num_episodes, description="writing DP zarr"):
            start, stop = store.episode_range(e)
            ep = store.episode(e)
            for key, array in arrays.items():
                array[start:stop] = ep.frames[key]
            tasks.append(ep.task)
        root.create_array(
            "meta/episode_ends", shape=(store.num_episodes,), dtype="int64", chunks=(max(store.num_episodes, 1),)
        )[:] = store.episode_ends
        root.attrs[META_KEY] = {**meta_document(store), "zarr_keys": paths}
        root.attrs["librobot_tasks"] = tasks
