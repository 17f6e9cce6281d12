"""EpisodeWriter: record or convert episodes into a store, one committed episode at a time.

Torch-free (numpy + zarr), so the robots package can record simulated or real episodes::

    with EpisodeWriter("demos.zarr", fps=30, robot_type="so100") as writer:
        writer.start_episode(task="pick up the cube")
        for obs, action in rollout:
            writer.add_frame({"observation.state": obs["state"], "observation.images.top": obs["top"],
                              "action": action})
        writer.end_episode()                       # durable from here on
        writer.add_episode(frames_dict, task="open the drawer")   # or a whole episode at once

Crash safety: frames go to the arrays past the committed end; an episode becomes visible only
when ``librobot_store.json`` is atomically rewritten with the new counts. A crash loses at most the
episode in progress, and reopening with ``mode="a"`` trims what it left behind.

Images are stored raw by default (bit-exact, no optional dependency, cheap to write while
recording); ``image_encoding="video"`` (or "h264", "av1", "lossless") stores each chunk of an
image array as a video clip instead (``video_clip.py``): ~30x smaller for 96x96 cameras, lossy
unless "lossless", and recorded in the commit record with its codec and quality.

Integrity: every chunk is written, zeros included (zarr would skip a chunk equal to the fill value,
and an absent chunk must mean damage), and each chunk file's size and crc32 go to the checksum log
(``store/integrity.py``) right after zarr writes it. Appending to a version-1 store keeps it at
version 1: its skipped chunks cannot be told from deleted ones.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.checkpoint import read_json, write_json
from librobot.core.logging import get_logger
from librobot.core.specs import FeatureSpec
from librobot.data.episode import check_frames, infer_features, is_image_key
from librobot.data.errors import DataFormatError, EpisodeError
from librobot.data.stats import StatsAccumulator
from librobot.data.store.integrity import append_sums, sum_lines
from librobot.data.store.layout import (
    CHUNKS_WRITTEN_VERSION,
    DATA_GROUP,
    EPISODE_ENDS,
    META_CHUNK,
    RAW_STORE_VERSION,
    STATS_FILE,
    STATS_STATE_FILE,
    STORE_FORMAT,
    TASK_INDEX,
    VIDEO_STORE_VERSION,
    chunk_frames,
    features_from_record,
    image_encodings,
    is_store,
    read_record,
    write_record,
)
from librobot.data.store.video_clip import VideoEncoding, video_encoding

log = get_logger("data.store")

_WRITE_ALL = {"write_empty_chunks": True}  # an all-zero chunk is written, not left out


def _compressor(name: str, image: bool) -> Any:
    """Blosc presets. "lz4" (default) decodes fastest; camera noise defeats it on images (~1.0-1.1x),
    which "lz4-bitshuffle" (~1.2-1.6x, ~2-4x slower to decode) and "zstd" (~1.4-1.8x, slower still)
    trade read speed for size. Sampling speed is the store's job, so speed is the default."""
    from zarr.codecs import BloscCodec

    if name == "none":
        return None
    presets = {
        "lz4": ("lz4", 5, "noshuffle" if image else "shuffle"),
        "lz4-bitshuffle": ("lz4", 5, "bitshuffle" if image else "shuffle"),
        "zstd": ("zstd", 3, "bitshuffle" if image else "shuffle"),
    }
    if name not in presets:
        raise ValueError(f"compressor must be one of {[*sorted(presets), 'none']}, got {name!r}")
    cname, clevel, shuffle = presets[name]
    return BloscCodec(cname=cname, clevel=clevel, shuffle=shuffle)


def _as_features(features: Mapping[str, Any] | None) -> dict[str, FeatureSpec] | None:
    if features is None:
        return None
    return {
        k: v if isinstance(v, FeatureSpec) else FeatureSpec.from_dict({"name": k, **dict(v)})
        for k, v in features.items()
    }


class EpisodeWriter:
    """Append episodes to a store at ``path`` (created with ``mode="w"``, extended with ``mode="a"``).

    ``features`` (key → FeatureSpec or its dict) fixes the schema; when omitted it is inferred from
    the first episode (``names`` then gives the per-element names of some keys). Images are given as uint8 [T, H, W, C] (per frame [H, W, C]); numeric arrays
    are cast within their kind (float64 → float32) and anything else is refused with the key named.

    ``image_encoding``: "raw" (the default for a new store), "video" (the default lossy preset,
    h264), "h264", "av1" or "lossless"; ``image_quality`` overrides a lossy preset's crf. Appending
    keeps the store's encoding (naming another one is an error).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float | None = None,
        features: Mapping[str, Any] | None = None,
        names: Mapping[str, Sequence[str]] | None = None,
        robot_type: str | None = None,
        mode: str = "w",
        overwrite: bool = False,
        image_chunk_frames: int | None = None,
        compressor: str = "lz4",
        info: Mapping[str, Any] | None = None,
        flush_frames: int = 64,
        image_encoding: str | None = None,
        image_quality: int | None = None,
    ) -> None:
        import zarr

        from librobot.data.store.video_codec import ClipTails  # zarr's codec API: imported with zarr

        self.path = Path(path)
        self._encoding: VideoEncoding | None = video_encoding(image_encoding or "raw", image_quality)
        self._tails = ClipTails()
        self._video_keys: set[str] = set()  # image features stored as clips
        self._zarr = zarr
        self._compressor = compressor
        self._names = dict(names or {})  # per-element names for inferred features (action: dx, dy, ...)
        self._image_chunk_frames = image_chunk_frames
        self._flush_frames = max(1, int(flush_frames))
        self._closed = False
        self._pending: dict[str, list[np.ndarray]] | None = None  # frames of the open episode
        self._pending_task: list[str] = []
        self._open_start = 0  # first frame of the open episode
        self._open_written = 0  # its frames already in the arrays
        if mode == "a":
            self._open_existing(fps, features, image_encoding, image_quality)
        elif mode == "w":
            if self.path.exists():
                if not overwrite:
                    raise FileExistsError(f"{self.path} already exists; pass overwrite=True or mode='a' to append")
                shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
            if fps is None or not float(fps) > 0:
                raise EpisodeError(f"{self.path}: a new store needs fps > 0, got {fps}")
            self.root = zarr.open_group(str(self.path), mode="w", zarr_format=3)
            self.root.attrs["librobot"] = {"format": STORE_FORMAT, "version": RAW_STORE_VERSION}
            self.record: dict[str, Any] = {
                "format": STORE_FORMAT,
                "version": RAW_STORE_VERSION,
                "fps": float(fps),
                "robot_type": robot_type,
                "features": {},
                "tasks": [],
                "num_episodes": 0,
                "num_frames": 0,
                "info": dict(info or {}),
                "created_unix": time.time(),
            }
            self.features: dict[str, FeatureSpec] | None = None
            self._stats: StatsAccumulator | None = None
            self._log_sums = True
            self._ends = self.root.create_array(
                EPISODE_ENDS, shape=(0,), chunks=(META_CHUNK,), dtype="int64", config=_WRITE_ALL
            )
            self._task_index = self.root.create_array(
                TASK_INDEX, shape=(0,), chunks=(META_CHUNK,), dtype="int32", config=_WRITE_ALL
            )
            self._arrays: dict[str, Any] = {}
            if features is not None:
                self._create_arrays(_as_features(features) or {})
            write_record(self.path, self.record)
        else:
            raise ValueError(f"mode must be 'w' (create) or 'a' (append), got {mode!r}")
        self._task_ids = {t: i for i, t in enumerate(self.record["tasks"])}

    # ------------------------------------------------------------------ setup
    def _open_existing(
        self, fps: float | None, features: Mapping[str, Any] | None, encoding: str | None, quality: int | None
    ) -> None:
        if not is_store(self.path):
            raise DataFormatError(f"cannot append to {self.path}: it is not a librobot episode store")
        self.record = read_record(self.path)
        if encoding is not None or quality is not None:
            from librobot.data.store.video_codec import check_appended_encoding

            check_appended_encoding(self.path, self.record, self._encoding, encoding, quality)
        self._video_keys = {k for k, e in image_encodings(self.record).items() if e.get("encoding") == "video"}
        if fps is not None and abs(float(fps) - self.record["fps"]) > 1e-9:
            raise EpisodeError(f"{self.path}: store fps is {self.record['fps']}, cannot append at fps {fps}")
        self.root = self._zarr.open_group(str(self.path), mode="r+")
        self.features = features_from_record(self.record) or None
        wanted = _as_features(features)
        if wanted is not None and self.features is not None and wanted != self.features:
            raise EpisodeError(
                f"{self.path}: features differ from the store's: {sorted(wanted)} vs {sorted(self.features)}"
            )
        self._log_sums = self.record["version"] >= CHUNKS_WRITTEN_VERSION
        self._ends = self.root[EPISODE_ENDS].with_config(_WRITE_ALL)
        self._task_index = self.root[TASK_INDEX].with_config(_WRITE_ALL)
        self._arrays = {k: self.root[f"{DATA_GROUP}/{k}"].with_config(_WRITE_ALL) for k in (self.features or {})}
        trimmed = []
        for name, array, rows in [*self._named_arrays(), (EPISODE_ENDS, self._ends, self.num_episodes)]:
            if array.shape[0] != rows:  # trim what a crash left behind
                array.resize((rows, *array.shape[1:]))
                trimmed.append((name, array, max(rows - 1, 0), rows))
        # the crash may have come between zarr rewriting the last committed chunk (atomically) and
        # logging it: log it again, as it stands
        self._log_chunks(trimmed)
        self._stats = self._load_stats()

    def _load_stats(self) -> StatsAccumulator | None:
        if self.features is None:
            return None
        state_path = self.path / STATS_STATE_FILE
        if state_path.is_file():
            state = read_json(state_path)
            if state.get("num_frames") == self.record["num_frames"]:
                return StatsAccumulator.from_state(self.features, state["accumulator"])
        from librobot.data.store.reader import EpisodeStore  # stale or missing: recompute by streaming

        acc = StatsAccumulator(self.features)
        store = EpisodeStore(self.path)
        for i in range(store.num_episodes):
            acc.update(store.episode(i).frames)
        return acc

    def _create_arrays(self, features: dict[str, FeatureSpec]) -> None:
        self.features = features
        self.record["features"] = {k: spec.to_dict() for k, spec in features.items()}
        self._stats = StatsAccumulator(features)
        encodings: dict[str, Any] = {}
        for key, spec in features.items():
            video = self._encoding is not None and is_image_key(key)
            frames = chunk_frames(spec, self._image_chunk_frames, video=video)
            if video:
                from librobot.data.store.video_codec import create_video_array

                assert self._encoding is not None
                self._arrays[key] = create_video_array(self.root, f"{DATA_GROUP}/{key}", spec, frames, self._encoding)
                self._video_keys.add(key)
                encodings[key] = self._encoding.to_record(frames)
                continue
            self._arrays[key] = self.root.create_array(
                f"{DATA_GROUP}/{key}",
                shape=(0, *spec.shape),
                chunks=(frames, *spec.shape),
                dtype=spec.dtype,
                compressors=_compressor(self._compressor, is_image_key(key)),
                fill_value=0,
                config=_WRITE_ALL,
            )
            if is_image_key(key):
                encodings[key] = {"encoding": "raw", "compressor": self._compressor, "lossless": True}
        if encodings:
            self.record["image_encoding"] = encodings
        if self._encoding is not None and any(is_image_key(k) for k in features):
            # readers that predate video clips refuse the store by its version, not on the codec
            self.record["version"] = VIDEO_STORE_VERSION
            self.root.attrs["librobot"] = {"format": STORE_FORMAT, "version": VIDEO_STORE_VERSION}

    def _named_arrays(self) -> list[tuple[str, Any, int]]:
        """(name in the store, array, committed rows) for the per-frame arrays."""
        named = [(f"{DATA_GROUP}/{k}", a, self.num_frames) for k, a in self._arrays.items()]
        return [*named, (TASK_INDEX, self._task_index, self.num_frames)]

    def _log_chunks(self, writes: Sequence[tuple[str, Any, int, int]]) -> None:
        """Log size and crc32 of the chunk files that rows ``[start, stop)`` of each array landed in."""
        if not self._log_sums:
            return
        entries = []
        for name, array, start, stop in writes:
            if stop <= start:
                continue
            size, tail = array.chunks[0], (0,) * (array.ndim - 1)
            for index in range(start // size, (stop - 1) // size + 1):
                entries.append((name, index, self.path / name / array.metadata.encode_chunk_key((index, *tail))))
        append_sums(self.path, sum_lines(entries))

    # ------------------------------------------------------------------ writing
    @property
    def num_episodes(self) -> int:
        return int(self.record["num_episodes"])

    @property
    def num_frames(self) -> int:
        return int(self.record["num_frames"])

    def _task_ids_for(self, tasks: Sequence[str]) -> np.ndarray:
        ids = np.empty(len(tasks), dtype=np.int32)
        for i, task in enumerate(tasks):
            if not isinstance(task, str):
                raise EpisodeError(f"{self.path}: tasks must be strings, got {type(task).__name__}")
            if task not in self._task_ids:
                self._task_ids[task] = len(self.record["tasks"])
                self.record["tasks"].append(task)
            ids[i] = self._task_ids[task]
        return ids

    def _append_arrays(self, frames: Mapping[str, np.ndarray], start: int) -> None:
        length = len(next(iter(frames.values())))
        for key, array in self._arrays.items():
            data = frames[key]
            if is_image_key(key):  # HWC in, CHW stored
                data = np.ascontiguousarray(data.transpose(0, 3, 1, 2))
            if array.shape[0] < start + length:
                array.resize((start + length, *array.shape[1:]))
            if key in self._video_keys:
                self._tails.write(key, array, data, start)
            else:
                array[start : start + length] = data
        self._log_chunks([(f"{DATA_GROUP}/{k}", a, start, start + length) for k, a in self._arrays.items()])

    def add_episode(self, frames: Mapping[str, Any], task: str | Sequence[str] = "") -> int:
        """Write and commit a whole episode (arrays [T, ...]); returns its index."""
        self._check_open()
        if self._pending is not None:
            raise EpisodeError(f"{self.path}: an episode is open (start_episode); end or discard it first")
        where = f"{self.path} episode {self.num_episodes}"
        if self.features is None:
            self._create_arrays(infer_features({k: np.asarray(v) for k, v in frames.items()}, self._names))
        assert self.features is not None
        checked = check_frames(frames, self.features, where=where)
        length = len(next(iter(checked.values())))
        if length == 0:
            raise EpisodeError(f"{where}: an episode needs at least one frame")
        tasks = [task] * length if isinstance(task, str) else list(task)
        if len(tasks) != length:
            raise EpisodeError(f"{where}: {len(tasks)} per-frame tasks for {length} frames")
        start = self.num_frames
        self._append_arrays(checked, start)
        assert self._stats is not None
        self._stats.update(checked)
        return self._commit(start, length, tasks)

    def _commit(self, start: int, length: int, tasks: Sequence[str]) -> int:
        ids = self._task_ids_for(tasks)
        self._task_index.resize((start + length,))
        self._task_index[start : start + length] = ids
        n_eps = self.num_episodes
        self._ends.resize((n_eps + 1,))
        self._ends[n_eps] = start + length
        self._log_chunks(
            [(TASK_INDEX, self._task_index, start, start + length), (EPISODE_ENDS, self._ends, n_eps, n_eps + 1)]
        )
        self.record["num_frames"] = start + length
        self.record["num_episodes"] = n_eps + 1
        write_record(self.path, self.record)  # the commit point
        return n_eps

    def start_episode(self, task: str = "") -> None:
        """Begin an episode recorded frame by frame with ``add_frame``."""
        self._check_open()
        if self._pending is not None:
            raise EpisodeError(f"{self.path}: an episode is already open; call end_episode or discard_episode")
        self._pending = {}
        self._pending_task = []
        self._default_task = task
        self._open_start = self.num_frames
        self._open_written = 0

    def add_frame(self, frame: Mapping[str, Any], task: str | None = None) -> None:
        """One frame: key → array without the time axis (image [H, W, C] uint8)."""
        if self._pending is None:
            raise EpisodeError(f"{self.path}: call start_episode before add_frame")
        if self.features is None:
            self._create_arrays(infer_features({k: np.asarray(v)[None] for k, v in frame.items()}, self._names))
        assert self.features is not None
        where = f"{self.path} episode {self.num_episodes} frame {self._open_written + len(self._pending_task)}"
        checked = check_frames(frame, self.features, where=where, time_axis=False)
        for key, value in checked.items():
            self._pending.setdefault(key, []).append(value)
        self._pending_task.append(self._default_task if task is None else task)
        if len(self._pending_task) - self._open_written >= self._flush_frames:
            self._flush()

    def _flush(self) -> None:
        assert self._pending is not None
        if not self._pending:
            return
        block = {k: np.stack(v) for k, v in self._pending.items()}
        self._append_arrays(block, self._open_start + self._open_written)
        self._open_written += len(next(iter(block.values())))
        self._pending = {k: [] for k in self._pending}

    def end_episode(self) -> int:
        """Commit the open episode; returns its index."""
        if self._pending is None:
            raise EpisodeError(f"{self.path}: no episode is open")
        self._flush()
        length = self._open_written
        if length == 0:
            self._pending = None
            raise EpisodeError(f"{self.path}: the episode has no frames; nothing was written")
        assert self._stats is not None and self.features is not None
        stop = self._open_start + length
        for s in range(self._open_start, stop, 256):  # statistics from what was written, in blocks
            e = min(s + 256, stop)
            block = {k: np.asarray(a[s:e]) for k, a in self._arrays.items()}
            self._stats.update({k: v.transpose(0, 2, 3, 1) if is_image_key(k) else v for k, v in block.items()})
        tasks = self._pending_task
        self._pending = None
        return self._commit(self._open_start, length, tasks)

    def discard_episode(self) -> None:
        """Drop the open episode (its frames are overwritten by the next one)."""
        self._pending = None
        self._pending_task = []

    # ------------------------------------------------------------------ closing
    def _check_open(self) -> None:
        if self._closed:
            raise EpisodeError(f"{self.path}: the writer is closed")

    def close(self) -> None:
        """Write statistics and the final record. Safe to call twice."""
        if self._closed:
            return
        if self._pending is not None:
            log.warning("%s: closing with an open episode; it is discarded", self.path)
            self.discard_episode()
        for array in [*self._arrays.values(), self._task_index]:  # drop frames of discarded episodes
            if array.shape[0] != self.num_frames:
                array.resize((self.num_frames, *array.shape[1:]))
        if self._stats is not None and self.num_frames:
            write_json(self.path / STATS_FILE, self._stats.result())
            write_json(
                self.path / STATS_STATE_FILE, {"num_frames": self.num_frames, "accumulator": self._stats.to_state()}
            )
        self.record["updated_unix"] = time.time()
        write_record(self.path, self.record)
        self._closed = True

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and self._pending is not None:
            self.discard_episode()
        self.close()
