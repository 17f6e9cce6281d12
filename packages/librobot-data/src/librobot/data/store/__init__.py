"""The canonical episode store (zarr v3): ``EpisodeWriter`` writes, ``EpisodeStore`` reads,
``verify_store`` checks every chunk file against the checksums the writer logged;
``set_video_cache_bytes`` bounds this process's cache of decoded video clips."""

from librobot.data.store.chunk_cache import set_video_cache_bytes
from librobot.data.store.integrity import VerifyReport, verify_store
from librobot.data.store.layout import is_store
from librobot.data.store.reader import EpisodeStore, open_store
from librobot.data.store.writer import EpisodeWriter

__all__ = [
    "EpisodeStore",
    "EpisodeWriter",
    "VerifyReport",
    "is_store",
    "open_store",
    "set_video_cache_bytes",
    "verify_store",
    "write_episodes",
]


def write_episodes(path, episodes, *, fps=None, **kwargs):  # type: ignore[no-untyped-def]
    """Write an iterable of ``Episode`` objects to a new store at ``path``; returns the path."""
    episodes = iter(episodes)
    first = next(episodes, None)
    fps = fps if fps is not None else (first.fps if first is not None else None)
    with EpisodeWriter(path, fps=fps, **kwargs) as writer:
        if first is not None:
            writer.add_episode(first.frames, first.task)
        for episode in episodes:
            writer.add_episode(episode.frames, episode.task)
    return path
