"""A byte-bounded LRU cache of decoded chunks, one per process.

Decoding a video clip costs ~70-100 us a frame at 96x96, while a training sample needs two or
three frames of it: without a cache a random sample would pay for the whole clip. Entries are
keyed by the chunk file's path and checked against its inode, size and mtime on every hit, so a
chunk rewritten by an append is decoded afresh rather than served stale.

The bound is per process: DataLoader workers each hold their own cache (forked workers start
with a copy of the parent's). Set it with the ``LIBROBOT_VIDEO_CACHE_MB`` environment variable
(read when a process first uses the cache, so it reaches workers however they start), with
``set_video_cache_bytes``, or per store with ``EpisodeStore(path, video_cache_bytes=...)``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

DEFAULT_CACHE_BYTES = 1 << 30
_caches: weakref.WeakSet[ChunkCache] = weakref.WeakSet()
ENV_CACHE_MB = "LIBROBOT_VIDEO_CACHE_MB"


class ChunkCache:
    """Decoded chunks (read-only arrays) by file path, least recently used evicted past ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.nbytes = 0
        self.hits = self.misses = 0
        self._entries: OrderedDict[str, tuple[tuple[int, int, int], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        _caches.add(self)

    def get(self, path: str, signature: tuple[int, int, int]) -> np.ndarray | None:
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or entry[0] != signature:
                self.misses += 1
                return None
            self._entries.move_to_end(path)
            self.hits += 1
            return entry[1]

    def put(self, path: str, signature: tuple[int, int, int], array: np.ndarray) -> None:
        if array.nbytes > self.max_bytes:  # would evict everything else and still not fit
            return
        array.flags.writeable = False  # callers get views of it: nobody may change a cached chunk
        with self._lock:
            old = self._entries.pop(path, None)
            if old is not None:
                self.nbytes -= old[1].nbytes
            self._entries[path] = (signature, array)
            self.nbytes += array.nbytes
            while self.nbytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.nbytes -= evicted.nbytes

    def resize(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = max(0, int(max_bytes))
            while self.nbytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.nbytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a thread of the parent may have held it at the fork

    def __reduce__(self) -> Any:  # pickled into a worker: the bound travels, the contents do not
        return (ChunkCache, (self.max_bytes,))


class _SharedCache(ChunkCache):
    """The process-wide cache; pickles as "the receiving process's own shared cache"."""

    def __reduce__(self) -> Any:
        return (shared_cache, ())


_shared: _SharedCache | None = None


def shared_cache() -> ChunkCache:
    """The process's cache, sized by ``LIBROBOT_VIDEO_CACHE_MB`` (default 1 GiB) on first use."""
    global _shared
    if _shared is None:
        env = os.environ.get(ENV_CACHE_MB)
        try:
            size = int(float(env) * (1 << 20)) if env else DEFAULT_CACHE_BYTES
        except ValueError:
            raise ValueError(f"{ENV_CACHE_MB}={env!r} is not a number of megabytes") from None
        _shared = _SharedCache(size)
    return _shared


def set_video_cache_bytes(max_bytes: int) -> None:
    """Bound this process's decoded-chunk cache (0 turns it off); workers started later by
    spawn/forkserver read ``LIBROBOT_VIDEO_CACHE_MB`` instead."""
    shared_cache().resize(max_bytes)


def _reinit_after_fork() -> None:
    for cache in list(_caches):
        cache._after_fork()


os.register_at_fork(after_in_child=_reinit_after_fork)


class SharedClips:
    """The decoded clips of one video array, in memory shared with the processes this one forks.

    torch's DataLoader forks its workers for every pass over the data (every epoch), so caches
    of their own start empty each time and each worker decodes the same clips again. An
    anonymous shared mapping made before the fork is one copy that all of them fill and read,
    and that outlives each pass: every complete clip is decoded once per dataset. It takes one
    slot per clip (pages are only allocated when a clip is decoded into them), so it is made
    only when the array's decoded frames fit the cache bound; workers started by spawn or
    forkserver, which cannot inherit it, use their own ``ChunkCache`` instead.

    A clip is published by a flag set after its frames are written; flags are read and set under
    a lock, whose acquire and release order the memory accesses on any CPU.
    """

    def __init__(self, clips: int, clip_shape: tuple[int, ...]) -> None:
        import mmap
        import multiprocessing

        self.clips, self.clip_shape = clips, tuple(clip_shape)
        self.nbytes = clips * int(np.prod(clip_shape))
        self._map = mmap.mmap(-1, self.nbytes + clips)  # anonymous and MAP_SHARED: forked children share it
        self.frames = np.frombuffer(self._map, np.uint8, count=self.nbytes).reshape(clips, *self.clip_shape)
        self._ready = np.frombuffer(self._map, np.uint8, count=clips, offset=self.nbytes)
        # a fork-context lock is unlinked at once: no resource-tracker process, nothing left behind
        self._lock = multiprocessing.get_context("fork").Lock()

    def get(self, index: int) -> np.ndarray | None:
        """Clip ``index`` when some process has decoded it (read-only view), else None."""
        if index >= self.clips or not self._lock.acquire(timeout=1.0):  # a worker killed holding it: skip
            return None
        try:
            ready = bool(self._ready[index])
        finally:
            self._lock.release()
        return self.view(index) if ready else None

    def view(self, index: int) -> np.ndarray:
        view = self.frames[index]
        view.flags.writeable = False
        return view

    def publish(self, index: int) -> None:
        """Mark clip ``index`` decoded, after its frames were written to ``frames[index]``."""
        if self._lock.acquire(timeout=1.0):
            try:
                self._ready[index] = 1
            finally:
                self._lock.release()

    def __reduce__(self) -> Any:  # a spawned worker cannot map it: it gets none, and decodes for itself
        return (_no_shared_clips, ())


def _no_shared_clips() -> None:
    return None
