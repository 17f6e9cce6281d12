"""EpisodeStore: read-only access to a store's committed episodes, frame ranges and metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.specs import FeatureSpec
from librobot.data.episode import Episode, is_image_key
from librobot.data.errors import DataFormatError, StoreChunkError
from librobot.data.store.chunk_cache import ChunkCache, shared_cache
from librobot.data.store.chunks import ChunkReader
from librobot.data.store.integrity import legacy_zeros_certain, store_arrays
from librobot.data.store.layout import (
    CHUNKS_WRITTEN_VERSION,
    DATA_GROUP,
    EPISODE_ENDS,
    STATS_FILE,
    TASK_INDEX,
    describe_encoding,
    disk_usage,
    features_from_record,
    image_encodings,
    list_files,
    read_record,
)


class EpisodeStore:
    """A store opened for reading. Cheap to open; arrays are read on demand, chunk by chunk.

    ``fast=False`` reads through zarr-python instead of the chunk reader (the reference path).
    Safe to use from DataLoader workers: it holds no open file handles between reads.

    A chunk file that is missing or does not decode raises ``StoreChunkError`` when read.
    ``missing_chunks="zeros"`` reads absent chunks as zeros instead: only for version-1 stores,
    whose writer did not write chunks that held nothing but zeros (``layout.py``).

    Video-encoded images (``image_encodings``) are decoded a clip at a time into a cache. When
    the decoded frames of all of them fit the cache bound (``video_cache_bytes``, by default the
    process-wide 1 GiB or ``LIBROBOT_VIDEO_CACHE_MB``), the store keeps them in memory shared with
    the DataLoader workers it is forked into, so each clip is decoded once however many workers
    and epochs read it; otherwise each process keeps an LRU cache of that many bytes.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fast: bool = True,
        missing_chunks: str = "error",
        video_cache_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self._cache = None if video_cache_bytes is None else ChunkCache(video_cache_bytes)
        self.format_name = "store"
        if missing_chunks not in ("error", "zeros"):
            raise ValueError(f"missing_chunks must be 'error' or 'zeros', got {missing_chunks!r}")
        self.missing_chunks = missing_chunks
        self.record = read_record(self.path)
        self.version = int(self.record["version"])
        self.fast = fast
        self.features: dict[str, FeatureSpec] = features_from_record(self.record)
        self.fps = float(self.record["fps"])
        self.tasks: list[str] = list(self.record["tasks"])
        self.num_episodes = int(self.record["num_episodes"])
        self.num_frames = int(self.record["num_frames"])
        self.robot_type = self.record.get("robot_type")
        self.info: dict[str, Any] = dict(self.record.get("info") or {})
        self.image_encodings: dict[str, dict[str, Any]] = image_encodings(self.record)
        self._readers: dict[str, ChunkReader] = {}
        ends = self._reader(EPISODE_ENDS).read(0, self.num_episodes) if self.num_episodes else np.zeros(0, np.int64)
        self.episode_ends = ends.astype(np.int64)
        self.episode_starts = np.concatenate([[0], self.episode_ends[:-1]]).astype(np.int64)
        if self.num_episodes and (self.episode_ends[-1] != self.num_frames or np.any(np.diff(self.episode_ends) <= 0)):
            raise DataFormatError(
                f"{self.path}: episode ends {self.episode_ends[:5].tolist()}... do not add up to "
                f"{self.num_frames} frames; the store is corrupt"
            )
        self._task_index: np.ndarray | None = None
        self._share_clips(video_cache_bytes)

    def _share_clips(self, budget: int | None) -> None:
        """Set up the decoded clips shared with forked workers, now: before any worker exists."""
        if not self.fast or not self.num_frames:
            return
        video = [k for k, e in self.image_encodings.items() if e.get("encoding") == "video"]
        readers = [self._reader(f"{DATA_GROUP}/{k}") for k in video]
        needed = sum(self.num_frames // r.chunk_shape[0] * int(np.prod(r.chunk_shape)) for r in readers)
        limit = budget if budget is not None else shared_cache().max_bytes
        if readers and needed <= limit:
            for reader in readers:
                reader.share_clips(self.num_frames)

    def _reader(self, name: str) -> ChunkReader:
        reader = self._readers.get(name)
        if reader is None:
            array_dir = self.path / name
            if not array_dir.is_dir():
                raise DataFormatError(f"{self.path}: array '{name}' is missing ({array_dir} does not exist)")
            reader = ChunkReader(array_dir, name=name, store=self.path, cache=self._cache, **self._chunk_policy(name))
            if name.startswith(DATA_GROUP + "/") and reader.shape[0] < self.num_frames:
                raise DataFormatError(
                    f"{array_dir}: has {reader.shape[0]} frames but the store records {self.num_frames}; truncated"
                )
            self._readers[name] = reader
        return reader

    def _chunk_policy(self, name: str) -> dict[str, Any]:
        """How an absent chunk of array ``name`` reads: an error, or zeros where that is certain or asked for."""
        if self.missing_chunks == "zeros" or legacy_zeros_certain(self.record, name):
            return {"missing": "fill"}
        if self.version >= CHUNKS_WRITTEN_VERSION:
            return {"missing": "error"}
        hint = (
            "re-convert the dataset or restore the file. This store is version 1, whose writer did not "
            "write chunks holding only zeros: if the data there was all zeros, rewrite it as a current store "
            f"with `librobot data convert {self.path} NEW --read-option missing_chunks=zeros`; "
            f"`librobot data verify {self.path}` lists every absent chunk"
        )
        return {"missing": "error", "hint": hint}

    def absent_chunks(self, files: dict[str, int] | None = None) -> list[tuple[str, int]]:
        """(array, chunk index) of every chunk holding committed frames whose file is absent and
        that would not read as zeros. ``files`` is ``layout.list_files(path)``, when already made."""
        files = list_files(self.path) if files is None else files
        present = {os.path.normpath(f) for f in files}
        absent = []
        for name, rows in store_arrays(self.record).items():
            reader = self._reader(name)
            if reader.missing == "fill":
                continue
            for index in range(reader.num_chunks(rows)):
                if os.path.normpath(reader.chunk_path(index)) not in present:
                    absent.append((name, index))
        return absent

    def _check_key(self, key: str) -> None:
        if key not in self.features:
            raise KeyError(f"{self.path}: no feature '{key}' (features: {sorted(self.features)})")

    # ------------------------------------------------------------------ frames
    def read(self, key: str, start: int, stop: int, *, layout: str = "chw") -> np.ndarray:
        """Frames ``[start, stop)`` (global indices) of ``key``; images as [n, C, H, W] or ``layout="hwc"``."""
        self._check_key(key)
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(f"{self.path}: frames [{start}, {stop}) outside [0, {self.num_frames})")
        reader = self._reader(f"{DATA_GROUP}/{key}")
        data = reader.read(start, stop) if self.fast else reader.read_reference(start, stop)
        if layout == "hwc" and is_image_key(key):
            data = np.ascontiguousarray(data.transpose(0, 2, 3, 1))
        return data

    def take(self, key: str, indices: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """Frames at global ``indices`` (any order, repeats allowed); images as [n, C, H, W].
        ``out`` (C-contiguous, that shape and the array's dtype) receives them instead of a new array."""
        self._check_key(key)
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_frames):
            raise IndexError(f"{self.path}: frame index outside [0, {self.num_frames})")
        reader = self._reader(f"{DATA_GROUP}/{key}")
        if self.fast:
            return reader.take(indices, out=out)
        if indices.size == 0:
            data = np.empty((0, *reader.shape[1:]), dtype=reader.dtype)
        else:
            lo, hi = int(indices.min()), int(indices.max()) + 1
            data = reader.read_reference(lo, hi)[indices - lo]
        if out is None:
            return data
        out[...] = data
        return out

    @property
    def task_index(self) -> np.ndarray:
        """int32 [N]: each frame's index into ``tasks``."""
        if self._task_index is None:
            self._task_index = self._reader(TASK_INDEX).read(0, self.num_frames)
        return self._task_index

    # ------------------------------------------------------------------ episodes
    def episode_range(self, episode: int) -> tuple[int, int]:
        if not -self.num_episodes <= episode < self.num_episodes:
            raise IndexError(f"{self.path}: episode {episode} out of range (0..{self.num_episodes - 1})")
        episode %= self.num_episodes
        return int(self.episode_starts[episode]), int(self.episode_ends[episode])

    def episode_lengths(self) -> np.ndarray:
        return self.episode_ends - self.episode_starts

    def episode_of_frame(self, frames: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.episode_ends, np.asarray(frames), side="right")

    def episode_task(self, episode: int) -> str | list[str]:
        """The episode's task, or its per-frame tasks when it changes within the episode."""
        start, stop = self.episode_range(episode)
        ids = self.task_index[start:stop]
        if np.all(ids == ids[0]):
            return self.tasks[int(ids[0])]
        return [self.tasks[int(i)] for i in ids]

    def episode(self, episode: int, keys: list[str] | None = None) -> Episode:
        """A whole episode in the writer's convention (images uint8 [T, H, W, C])."""
        start, stop = self.episode_range(episode)
        keys = list(self.features) if keys is None else keys
        frames = {k: self.read(k, start, stop, layout="hwc") for k in keys}
        return Episode(
            frames=frames, task=self.episode_task(episode), fps=self.fps, metadata={"episode_index": episode}
        )

    def __len__(self) -> int:
        return self.num_episodes

    def __iter__(self) -> Iterator[Episode]:
        for i in range(self.num_episodes):
            yield self.episode(i)

    # ------------------------------------------------------------------ metadata
    @property
    def stats(self) -> dict[str, Any] | None:
        path = self.path / STATS_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path} is not valid JSON: {exc}") from exc

    @property
    def cameras(self) -> list[str]:
        return [k.split(".", 2)[2] for k in self.features if is_image_key(k)]

    def nbytes_on_disk(self) -> int:
        return disk_usage(self.path)

    def summary(self) -> dict[str, Any]:
        """What ``librobot data info`` shows. Walks the store's files once (for its size), and on
        the way checks that every chunk file is there: raises ``StoreChunkError`` when one is not."""
        files = list_files(self.path)
        absent = self.absent_chunks(files)
        if absent:
            name, index = absent[0]
            error = self._reader(name).damaged(index, "missing")
            if len(absent) > 1:
                error = StoreChunkError(
                    f"{error} ({len(absent)} chunk files are missing in all)",
                    array=error.array,
                    key=error.key,
                    file=error.file,
                    problem=error.problem,
                )
            raise error
        lengths = self.episode_lengths()
        return {
            "path": str(self.path),
            "format": "store",
            "fps": self.fps,
            "robot_type": self.robot_type,
            "num_episodes": self.num_episodes,
            "num_frames": self.num_frames,
            "episode_length": {"min": int(lengths.min()), "max": int(lengths.max()), "mean": float(lengths.mean())}
            if len(lengths)
            else None,
            "tasks": self.tasks,
            "features": {k: spec.to_dict() for k, spec in self.features.items()},
            "image_encoding": {k: dict(e, summary=describe_encoding(e)) for k, e in self.image_encodings.items()},
            "bytes_on_disk": disk_usage(self.path),  # what du counts: blocks of files and directories
            "bytes_of_files": sum(files.values()),
            "files": len(files),
            "store_version": self.version,
        }

    def close(self) -> None:
        """Nothing to release (files are opened per read); present for symmetry with format readers."""

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.path)!r}, episodes={self.num_episodes}, frames={self.num_frames})"


def open_store(path: str | Path, **kwargs: Any) -> EpisodeStore:
    return EpisodeStore(path, **kwargs)
