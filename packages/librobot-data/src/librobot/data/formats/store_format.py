"""The store itself as a format, so ``convert`` can rechunk or recompress a store into a store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from librobot.core.logging import track
from librobot.data.formats.base import DatasetFormat
from librobot.data.store.layout import is_store
from librobot.data.store.reader import EpisodeStore
from librobot.data.store.writer import EpisodeWriter


class StoreFormat(DatasetFormat):
    name = "store"
    description = "librobot episode store (zarr v3, chunked and compressed, random access)"

    @classmethod
    def detect(cls, path: Path) -> bool:
        return is_store(path)

    def open(self, path: str | Path, *, fast: bool = True, missing_chunks: str = "error") -> EpisodeStore:
        return EpisodeStore(path, fast=fast, missing_chunks=missing_chunks)

    def write(
        self,
        store: Any,
        path: str | Path,
        *,
        image_chunk_frames: int | None = None,
        compressor: str = "lz4",
        image_encoding: str | None = None,
        image_quality: int | None = None,
    ) -> None:
        with EpisodeWriter(
            path,
            fps=store.fps,
            features=store.features,
            robot_type=store.robot_type,
            info=store.info,
            image_chunk_frames=image_chunk_frames,
            compressor=compressor,
            image_encoding=image_encoding,
            image_quality=image_quality,
        ) as writer:
            for e in track(range(store.num_episodes), total=store.num_episodes, description="writing store"):
                episode = store.episode(e)
                writer.add_episode(episode.frames, episode.task)
