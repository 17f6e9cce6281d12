"""On-disk layout of the episode store (a zarr v3 group) and its commit record.

::

    <store>/
      zarr.json                 zarr group; attributes {"librobot": {"format": ..., "version": ...}}
      librobot_store.json       the commit record, written atomically after each episode:
                                fps, features, tasks, num_episodes, num_frames, robot_type, info
      stats.json                dataset statistics (librobot.data.stats), written on close
      stats_state.json          the statistics accumulator, so later appends extend it
      data/<feature>            one array per feature, all episodes concatenated on axis 0;
                                images uint8 [N, C, H, W], everything else [N, *shape]. Images
                                are kept "raw" (blosc-compressed chunks of a frame or two) or as
                                "video": each chunk a clip of 32 frames (zarr codec
                                ``librobot.video``, chunk files ``c.<i>.0.0.0``); the record's
                                ``image_encoding`` says which, with codec and quality
      meta/episode_ends         int64 [E], exclusive end frame of each episode
      meta/task_index           int32 [N], index into the record's task list, per frame
      chunk_sums.jsonl          (version 2) one line per chunk file written, {"array", "chunk",
                                "bytes", "crc32"}, appended as chunks are (re)written; the last
                                line of a chunk wins. ``librobot data verify`` checks the files
                                against it.

Arrays may run past ``num_frames`` after a crash mid-episode: readers trust the commit record, and
a writer opened to append trims them back first.

Versions: 3 is a version-2 store with video-encoded images (older readers refuse it by its
version rather than failing on the unknown codec); a store without them is still written as 2.
2 writes every chunk that holds committed frames (zarr skips chunks equal to the fill
value unless told otherwise), so an absent chunk file is damage and reads raise
``StoreChunkError``. Version 1 stores did skip all-zero chunks: reading one raises too, except
where zeros are certain (the task index of a single-task store) or the caller opts in with
``EpisodeStore(path, missing_chunks="zeros")``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.checkpoint import write_json
from librobot.core.specs import FeatureSpec
from librobot.data.episode import is_image_key
from librobot.data.errors import DataFormatError
from librobot.data.store.video_clip import VIDEO_CHUNK_FRAMES

STORE_FORMAT = "librobot-episode-store"
STORE_VERSION = 3  # the newest version this package reads and writes
RAW_STORE_VERSION = 2  # what a store without video-encoded images is written as, for older readers
VIDEO_STORE_VERSION = 3
CHUNKS_WRITTEN_VERSION = 2  # from this version on every chunk is written and its checksum logged
RECORD_FILE = "librobot_store.json"
STATS_FILE = "stats.json"
STATS_STATE_FILE = "stats_state.json"
CHUNK_SUMS_FILE = "chunk_sums.jsonl"
DATA_GROUP = "data"
EPISODE_ENDS = "meta/episode_ends"
TASK_INDEX = "meta/task_index"

IMAGE_CHUNK_BYTES = 64 * 1024  # a random read decodes whole chunks: one or two frames of a camera
NUMERIC_CHUNK_BYTES = 1 << 20
META_CHUNK = 65536


def is_store(path: str | Path) -> bool:
    return (Path(path) / RECORD_FILE).is_file()


def chunk_frames(spec: FeatureSpec, image_chunk_frames: int | None = None, *, video: bool = False) -> int:
    """Frames per chunk: small for raw images (random access decodes a whole chunk), a clip's
    length for video-encoded ones (decoded clips are cached), large otherwise."""
    frame_bytes = int(np.prod(spec.shape or (1,))) * np.dtype(spec.dtype).itemsize
    if is_image_key(spec.name):
        if image_chunk_frames is not None:
            return max(1, int(image_chunk_frames))
        if video:
            return VIDEO_CHUNK_FRAMES
        return int(np.clip(round(IMAGE_CHUNK_BYTES / max(frame_bytes, 1)), 1, 64))
    return int(np.clip(NUMERIC_CHUNK_BYTES // max(frame_bytes, 1), 256, META_CHUNK))


def read_record(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    record_path = path / RECORD_FILE
    if not record_path.is_file():
        raise DataFormatError(
            f"{path} is not a librobot episode store: {RECORD_FILE} is missing "
            f"(convert a dataset into a store with `librobot data convert`)"
        )
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{record_path} is not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != STORE_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise DataFormatError(f"{record_path}: format is {found!r}, expected {STORE_FORMAT!r}")
    if type(record.setdefault("version", 1)) is not int:
        raise DataFormatError(f"{record_path}: version must be an integer, got {record['version']!r}")
    if record["version"] > STORE_VERSION:
        raise DataFormatError(
            f"{record_path}: written by a newer librobot-data (store version {record['version']}, "
            f"this one reads up to {STORE_VERSION}); upgrade librobot-data"
        )
    for key in ("fps", "features", "tasks", "num_episodes", "num_frames"):
        if key not in record:
            raise DataFormatError(f"{record_path}: missing key '{key}'")
    return record


def image_encodings(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Image feature → how its frames are stored (stores older than the field hold them raw)."""
    recorded = record.get("image_encoding") or {}
    raw = {"encoding": "raw", "lossless": True}
    return {key: dict(recorded.get(key) or raw) for key in record["features"] if is_image_key(key)}


def describe_encoding(encoding: dict[str, Any]) -> str:
    """One line for ``librobot data info``, e.g. "video h264 crf 23 yuv420p (lossy), 32 frames a clip"."""
    if encoding.get("encoding") != "video":
        return (
            "raw uint8 chunks" + (f" ({encoding['compressor']})" if encoding.get("compressor") else "") + ", lossless"
        )
    quality = "lossless" if encoding.get("lossless") else f"crf {encoding.get('crf')} {encoding.get('pix_fmt')} (lossy)"
    return f"video {encoding.get('bitstream')} ({encoding.get('codec')}) {quality}, {encoding.get('frames_per_clip')} frames a clip"


def write_record(path: str | Path, record: dict[str, Any]) -> None:
    write_json(Path(path) / RECORD_FILE, record)


def features_from_record(record: dict[str, Any]) -> dict[str, FeatureSpec]:
    return {key: FeatureSpec.from_dict(spec) for key, spec in record["features"].items()}


def list_files(path: str | Path) -> dict[str, int]:
    """Size of every file under ``path``, keyed by its path as ``os.walk`` joins it (one walk)."""
    files: dict[str, int] = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            try:
                files[full] = os.stat(full).st_size
            except OSError:  # vanished between the listing and the stat
                pass
    return files


def disk_usage(path: str | Path) -> int:
    """What ``path`` takes on disk, as ``du`` counts it: the allocated blocks of every file and
    directory under it. A store of many small chunk files takes several times the bytes it holds
    (a block per file, one per directory of the chunk tree); this is the size a user pays."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for root, _, names in os.walk(path):  # every directory is a root exactly once
        for entry in (root, *(os.path.join(root, n) for n in names)):
            try:
                total += os.lstat(entry).st_blocks * 512
            except OSError:  # vanished between the listing and the stat
                pass
    return total


def dir_size(path: str | Path) -> int:
    """Bytes held in every file under ``path`` (or of the file itself); ``disk_usage`` is what
    they take on disk."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(list_files(path).values())
