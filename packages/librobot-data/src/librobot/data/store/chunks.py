"""Fast reads of frame ranges from the store's zarr arrays, straight from the chunk files.

zarr-python 3 spends about a millisecond of asyncio bookkeeping per ``array[a:b]``; a training
sample needs a few small reads, so that overhead would dominate. For the layouts the store writes
(regular grid chunked on axis 0 only, little-endian ``bytes`` codec followed by at most one of
blosc / zstd / gzip, default chunk keys, on a local file system) this module reads and decodes the
chunk files itself, ~10x faster. Anything else falls back to zarr, the reference path; tests check
that both return the same arrays.

Arrays whose chunks are video clips (codec ``librobot.video``, ``video_clip.py``) are read the same
way: a clip is decoded whole into a cache (``chunk_cache.py``: memory shared with forked
DataLoader workers when the array's decoded frames fit the bound, else a byte-bounded LRU per
process) and the frames asked for are copied out of it, so random samples falling in a decoded
clip cost what raw chunks cost.

A chunk file that is absent or does not decode raises ``StoreChunkError`` naming the array, the
chunk and the fix; it is never read as the fill value (``missing="fill"`` only serves stores of
version 1, whose writer skipped chunks that held nothing but zeros). The check costs nothing on
the hot path: the file is opened anyway, and its absence is the ``open`` failing.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from librobot.data.errors import DataFormatError, StoreChunkError
from librobot.data.store.chunk_cache import ChunkCache, SharedClips, shared_cache
from librobot.data.store.video_clip import CODEC_NAME as VIDEO_CODEC
from librobot.data.store.video_clip import ClipError, decode_clip

_DECODERS = ("blosc", "zstd", "gzip")


def _decoder(name: str) -> Any:
    import numcodecs

    if name == "blosc":
        return numcodecs.Blosc()
    if name == "zstd":
        return numcodecs.Zstd()
    return numcodecs.GZip()


class ChunkReader:
    """Reads ``[start, stop)`` along axis 0 of one zarr v3 array directory."""

    def __init__(
        self,
        array_dir: str | Path,
        *,
        name: str | None = None,
        store: str | Path | None = None,
        missing: str = "error",
        hint: str | None = None,
        cache: ChunkCache | None = None,
    ) -> None:
        self.dir = Path(array_dir)
        # the store's arrays live at <store>/<group>/<array>: name them that way in messages
        self.store = Path(store) if store is not None else self.dir.parent.parent
        self.name = name or f"{self.dir.parent.name}/{self.dir.name}"
        if missing not in ("error", "fill"):
            raise ValueError(f"missing must be 'error' or 'fill', got {missing!r}")
        self.missing = missing
        self.hint = hint or (
            f"re-convert the dataset or restore the file; `librobot data verify {self.store}` lists every damaged chunk"
        )
        meta_path = self.dir / "zarr.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            self.shape = tuple(int(n) for n in meta["shape"])
            self.dtype = np.dtype(meta["data_type"])
            self.chunk_shape = tuple(int(n) for n in meta["chunk_grid"]["configuration"]["chunk_shape"])
        except FileNotFoundError:
            raise DataFormatError(f"{meta_path} is missing: the store's array '{self.name}' is gone") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"{meta_path} is not valid JSON: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{meta_path}: not a zarr v3 array description ({exc!r})") from exc
        if not self.chunk_shape or self.chunk_shape[0] < 1 or len(self.chunk_shape) != len(self.shape):
            raise DataFormatError(
                f"{meta_path}: chunk shape {list(self.chunk_shape)} does not fit shape {list(self.shape)}"
            )
        self.fill_value = meta.get("fill_value", 0)
        codecs = meta.get("codecs", [])
        # the clips' bitstream ("h264", "av1") when the chunks are video clips
        self.video: str | None = None
        if len(codecs) == 1 and codecs[0].get("name") == VIDEO_CODEC:
            self.video = str((codecs[0].get("configuration") or {}).get("bitstream", ""))
        self._cache = cache  # None: the process's shared cache (looked up per read: it is per process)
        self.shared: SharedClips | None = None  # see share_clips
        self.fast = self._supported(meta)
        self._zarr: Any = None
        self._codec: Any = None
        self._buffers: dict[int, np.ndarray] = {}
        self._decompress: Any = None
        if self.fast and len(codecs) == 2:
            self._codec = _decoder(codecs[1]["name"])
            if codecs[1]["name"] == "blosc":  # skip numcodecs' per-call buffer checks (~20 us a chunk)
                from numcodecs import blosc

                self._decompress = blosc.decompress
        encoding = meta.get("chunk_key_encoding", {})
        self._sep = encoding.get("configuration", {}).get("separator", "/")
        self._prefix = "c" + self._sep if encoding.get("name", "default") == "default" else ""
        tail = self._sep.join("0" for _ in self.shape[1:])
        self._base = f"{self.dir}{os.sep}{self._prefix}"
        self._suffix = self._sep + tail if tail else ""

    def num_chunks(self, frames: int) -> int:
        """Chunks that hold frames ``[0, frames)``."""
        return -(-frames // self.chunk_shape[0])

    def chunk_key(self, index: int) -> str:
        """The chunk's key inside the array directory, e.g. ``c/3/0``."""
        return f"{self._prefix}{index}{self._suffix}"

    def _supported(self, meta: dict[str, Any]) -> bool:
        if meta.get("zarr_format") != 3 or meta.get("chunk_grid", {}).get("name") != "regular":
            return False
        if tuple(meta["chunk_grid"]["configuration"]["chunk_shape"][1:]) != tuple(meta["shape"][1:]):
            return False
        if meta.get("storage_transformers"):
            return False
        if self.video is not None:
            return True
        codecs = meta.get("codecs", [])
        if not codecs or codecs[0]["name"] != "bytes" or len(codecs) > 2:
            return False
        if codecs[0].get("configuration", {}).get("endian", "little") != "little" and self.dtype.itemsize > 1:
            return False
        return len(codecs) == 1 or codecs[1]["name"] in _DECODERS

    def chunk_path(self, index: int) -> str:
        return f"{self._base}{index}{self._suffix}"  # plain strings: this runs for every sample

    def damaged(self, index: int, problem: str, detail: str = "") -> StoreChunkError:
        """The error for chunk ``index`` being "missing" or "corrupt" (``detail`` says how)."""
        path, key = self.chunk_path(index), self.chunk_key(index)
        if problem == "missing":
            what = f"is missing ({path})"
        else:
            what = f"cannot be decoded ({' '.join(detail.split())}): the file {path} is corrupt or truncated"
        return StoreChunkError(
            f"{self.store}: chunk {key} of array '{self.name}' {what}; {self.hint}",
            array=self.name,
            key=key,
            file=path,
            problem=problem,
        )

    def _decode_into(self, index: int, dest: np.ndarray) -> None:
        """Decode chunk ``index`` into ``dest`` (C-contiguous, the chunk's shape)."""
        try:
            with open(self.chunk_path(index), "rb", buffering=0) as handle:
                raw = handle.read()
        except FileNotFoundError:
            if self.missing == "fill":  # version-1 stores: the writer skipped all-fill chunks
                dest[...] = self.fill_value
                return
            raise self.damaged(index, "missing") from None
        except OSError as exc:  # a directory in its place, no permission...
            raise self.damaged(index, "corrupt", f"cannot be read: {exc}") from exc
        self.decode(raw, index, dest)

    def decode(self, raw: bytes, index: int, dest: np.ndarray | None = None) -> np.ndarray:
        """Decode the bytes of chunk ``index`` into ``dest`` (default: a scratch buffer)."""
        dest = self._scratch() if dest is None else dest
        if self.video is not None:
            try:
                return decode_clip(raw, self.chunk_shape, self.video, dest)
            except ClipError as exc:  # a missing PyAV is not damage: its error names the extra
                raise self.damaged(index, "corrupt", f"video clip: {exc}") from exc
        try:
            if self._codec is None:
                dest[...] = np.frombuffer(raw, dtype=self.dtype).reshape(self.chunk_shape)
            elif self._decompress is not None:
                # blosc trusts its 16-byte header: it fills only the bytes the header claims and
                # reads as many as it says the frame has, so a truncated or foreign chunk is caught here
                if len(raw) < 16 or (int.from_bytes(raw[4:8], "little"), int.from_bytes(raw[12:16], "little")) != (
                    dest.nbytes,
                    len(raw),
                ):
                    raise ValueError(
                        f"blosc header does not describe this {dest.nbytes}-byte chunk of {len(raw)} bytes"
                    )
                self._decompress(raw, dest)
            else:
                self._codec.decode(raw, out=dest)
        except Exception as exc:  # codecs raise their own error types
            raise self.damaged(index, "corrupt", str(exc) or type(exc).__name__) from exc
        return dest

    def _scratch(self) -> np.ndarray:
        """A per-thread chunk buffer, reused: fresh memory is slow to fault in on these VMs."""
        key = threading.get_ident()
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = np.empty(self.chunk_shape, dtype=self.dtype)
        return buffer

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``[start, stop)`` as a new array, or written into ``out`` (C-contiguous, that shape)."""
        if not 0 <= start <= stop <= self.shape[0]:
            raise IndexError(f"{self.dir}: frames [{start}, {stop}) out of range [0, {self.shape[0]})")
        if out is not None and (
            out.shape != (stop - start, *self.shape[1:]) or out.dtype != self.dtype or not out.flags.c_contiguous
        ):
            raise ValueError(
                f"{self.dir}: out must be C-contiguous {self.dtype} of shape {(stop - start, *self.shape[1:])}, "
                f"got {out.dtype} {out.shape}"
            )
        if not self.fast:
            if out is None:
                return self.read_reference(start, stop)
            out[...] = self.read_reference(start, stop)
            return out
        if out is None:
            out = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        if self.video is not None:
            return self._read_clips(start, stop, out)
        size = self.chunk_shape[0]
        pos = start
        while pos < stop:
            chunk = pos // size
            lo = pos - chunk * size
            hi = min(stop - chunk * size, size)
            dest = out[pos - start : pos - start + hi - lo]
            if lo == 0 and hi == size:  # the whole chunk is wanted: decode straight into the output
                self._decode_into(chunk, dest)
            else:
                scratch = self._scratch()
                self._decode_into(chunk, scratch)
                dest[...] = scratch[lo:hi]
            pos += hi - lo
        return out

    def _read_clips(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        size = self.chunk_shape[0]
        pos = start
        while pos < stop:
            chunk = pos // size
            lo, hi = pos - chunk * size, min(stop - chunk * size, size)
            out[pos - start : pos - start + hi - lo] = self.clip(chunk)[lo:hi]
            pos += hi - lo
        return out

    def share_clips(self, rows: int) -> int:
        """Keep the decoded clips holding frames ``[0, rows)`` in memory shared with DataLoader
        workers forked from now on (``SharedClips``); the last clip, when partly filled, stays in
        the per-process cache (an append rewrites it). Returns the bytes it may take."""
        clips = rows // self.chunk_shape[0]
        if self.video is None or clips == 0:
            return 0
        try:
            self.shared = SharedClips(clips, self.chunk_shape)
        except (ValueError, OSError):  # no fork on this platform, or no memory to map: per-process caches
            return 0
        return self.shared.nbytes

    def clip(self, index: int) -> np.ndarray:
        """Chunk ``index`` of a video-encoded array, decoded (read-only; from a cache when there)."""
        shared = self.shared
        if shared is not None and index < shared.clips:
            frames = shared.get(index)
            if frames is None:  # decode straight into the shared slot, then publish it
                self.decode(self._read_file(index), index, shared.frames[index])
                shared.publish(index)
                frames = shared.view(index)
            return frames
        path = self.chunk_path(index)
        try:
            stat = os.stat(path)
        except FileNotFoundError:  # never the fill value: a video store is new enough to write every chunk
            raise self.damaged(index, "missing") from None
        except OSError as exc:
            raise self.damaged(index, "corrupt", f"cannot be read: {exc}") from exc
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cache = self._cache if self._cache is not None else shared_cache()
        frames = cache.get(path, signature)
        if frames is None:
            frames = self.decode(self._read_file(index), index, np.empty(self.chunk_shape, dtype=self.dtype))
            cache.put(path, signature, frames)
        return frames

    def _read_file(self, index: int) -> bytes:
        try:
            with open(self.chunk_path(index), "rb", buffering=0) as handle:
                return handle.read()
        except FileNotFoundError:
            raise self.damaged(index, "missing") from None
        except OSError as exc:
            raise self.damaged(index, "corrupt", f"cannot be read: {exc}") from exc

    def __getstate__(self) -> dict[str, Any]:  # e.g. DataLoader workers started with "spawn"
        state = dict(self.__dict__)
        state.update(_zarr=None, _buffers={})
        return state

    def read_reference(self, start: int, stop: int) -> np.ndarray:
        """The same frames through zarr-python (the reference path)."""
        size = self.chunk_shape[0]
        if self.missing == "error" and stop > start:  # zarr reads an absent chunk as the fill value
            for index in range(start // size, (stop - 1) // size + 1):
                if not os.path.isfile(self.chunk_path(index)):
                    raise self.damaged(index, "missing")
        if self._zarr is None:
            import zarr

            import librobot.data.store.video_codec  # noqa: F401  (registers the video codec with zarr)

            self._zarr = zarr.open_array(str(self.dir), mode="r")
        return np.asarray(self._zarr[start:stop])

    def take(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Frames at sorted-or-not ``indices``; each run of nearby frames costs one range read."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype) if out is None else out
        lo, hi = int(indices.min()), int(indices.max()) + 1
        if hi - lo == len(indices) and np.array_equal(indices, np.arange(lo, hi)):
            return self.read(lo, hi, out)  # a plain window (the common case): no gather copy
        if hi - lo <= 4 * len(indices) + self.chunk_shape[0]:
            frames = self.read(lo, hi)
            return np.take(frames, indices - lo, axis=0, out=out)
        if out is None:
            out = np.empty((len(indices), *self.shape[1:]), dtype=self.dtype)
        for j, i in enumerate(indices):
            self.read(int(i), int(i) + 1, out[j : j + 1])
        return out
