"""Convert between any two formats through the store, crash-safely and idempotently.

X → store → Y: the source is read episode by episode into a store (statistics computed on the
way), and the target writer reads that store. Everything is built in a hidden staging folder next
to the destination and renamed into place only when complete, so an interrupted or failed
conversion leaves no partial output (stale staging folders are removed by the next run). The
output is stamped with a fingerprint of the source files and options; re-running the same
conversion finds the stamp and does nothing.

Images going into a store keep the kind of encoding they had (``default_image_encoding``): a
source whose cameras are lossy video already (LeRobot's mp4s, a video-encoded store) is stored
as video clips, ~30x smaller than raw frames at 96x96 and random access still ~5x+ faster than
decoding the mp4s; lossless sources stay raw, bit-exact. ``write_options={"image_encoding": ...}``
("raw", "video", "h264", "av1", "lossless", or "auto" for this rule) says otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from librobot.core.logging import get_logger, track
from librobot.data.errors import ConversionError, DataFormatError, EpisodeError
from librobot.data.formats.base import EpisodeSource, detect_format, get_format
from librobot.data.store.layout import CHUNKS_WRITTEN_VERSION, disk_usage, read_record
from librobot.data.store.reader import EpisodeStore
from librobot.data.store.writer import EpisodeWriter

log = get_logger("data.convert")


@dataclass
class ConversionResult:
    dst: Path
    src_format: str
    dst_format: str
    num_episodes: int
    num_frames: int
    skipped: bool
    seconds: float
    bytes_on_disk: int
    image_encoding: str | None = None  # how a store target holds its images (None: not a store, or skipped)


def fingerprint(
    src: Path, src_format: str, dst_format: str, read_options: Mapping[str, Any], write_options: Mapping[str, Any]
) -> str:
    """sha256 over the source files (path, size, mtime) and the conversion's settings."""
    digest = hashlib.sha256()
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    for file in files:
        stat = file.stat()
        digest.update(
            f"{file.relative_to(src) if file != src else file.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    settings = {"from": src_format, "to": dst_format, "read": dict(read_options), "write": dict(write_options)}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def write_store(
    source: EpisodeSource | EpisodeStore, path: str | Path, *, description: str = "reading", **store_options: Any
) -> Path:
    """Copy every episode of ``source`` into a new store at ``path``."""
    info = {"source_format": getattr(source, "format_name", ""), "source": str(source.path)}
    with EpisodeWriter(
        path, fps=source.fps, features=source.features, robot_type=source.robot_type, info=info, **store_options
    ) as writer:
        for i in track(range(source.num_episodes), total=source.num_episodes, description=description):
            episode = source.episode(i)
            try:
                writer.add_episode(episode.frames, episode.task)
            except EpisodeError as exc:
                raise DataFormatError(f"{source.path}: episode {i}: {exc}") from exc
    return Path(path)


def default_image_encoding(source: Any) -> str:
    """The image encoding a store made from ``source`` gets by default: "video" when the source's
    images are lossy video already, "lossless" for a store of lossless clips, else "raw" (so a
    conversion loses nothing the source had not lost already)."""
    encodings = getattr(source, "image_encodings", None)  # a store
    if isinstance(encodings, dict):
        kinds = {
            ("lossless" if e.get("lossless") else "video") if e.get("encoding") == "video" else "raw"
            for e in encodings.values()
        }
        return kinds.pop() if len(kinds) == 1 else "raw"
    info = getattr(source, "info", None)
    features = info.get("features", {}) if isinstance(info, dict) else {}
    for spec in features.values():
        if isinstance(spec, dict) and spec.get("dtype") == "video":
            pix_fmt = str((spec.get("info") or {}).get("video.pix_fmt", "yuv420p"))
            if pix_fmt.startswith("yuv"):  # chroma subsampled or not, YUV video is not what the camera gave
                return "video"
    return "raw"


def _clean_stale(dst: Path) -> None:
    for stale in dst.parent.glob(f".{dst.name}.convert-*"):
        shutil.rmtree(stale, ignore_errors=True)


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    src_format: str | None = None,
    dst_format: str = "store",
    read_options: Mapping[str, Any] | None = None,
    write_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> ConversionResult:
    """Convert the dataset at ``src`` into ``dst_format`` at ``dst`` (see the module docstring)."""
    started = time.perf_counter()
    src, dst = Path(src), Path(dst)
    read_options, write_options = dict(read_options or {}), dict(write_options or {})
    if not src.exists():
        raise ConversionError(f"source {src} does not exist")
    if dst.resolve() == src.resolve():
        raise ConversionError(f"source and destination are the same path: {src}")
    writer = get_format(dst_format)  # an unknown target fails before anything is read
    src_format = get_format(src_format).name if src_format else detect_format(src)
    reader = get_format(src_format)
    stamp = {
        "fingerprint": fingerprint(src, src_format, writer.name, read_options, write_options),
        "source": str(src.resolve()),
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(dst)
    if dst.exists():
        existing = writer.read_stamp(dst)
        old = _old_store_version(dst) if writer.name == "store" else None
        if existing and existing.get("fingerprint") == stamp["fingerprint"] and old is None:
            log.info("%s is up to date (same source and options); nothing to do", dst)
            return _result(dst, src_format, writer.name, existing, started, skipped=True)
        if old is not None and not overwrite:
            raise ConversionError(
                f"{dst} is a version-{old} store; this librobot-data writes version {CHUNKS_WRITTEN_VERSION} or later, which "
                "records every chunk so that a lost one is an error rather than zeros. Pass overwrite=True "
                "(--overwrite) to re-convert it"
            )
        if not overwrite:
            raise ConversionError(
                f"{dst} already exists and was not made from this source with these options; pass overwrite=True (--overwrite) to replace it"
            )
    staging = dst.parent / f".{dst.name}.convert-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    encoding = None
    try:
        source = reader.open(src, **read_options)
        try:
            out = staging / dst.name
            if writer.name == "store":
                options = dict(write_options)
                if options.get("image_encoding", "auto") == "auto":
                    options["image_encoding"] = default_image_encoding(source)
                encoding = options["image_encoding"]
                store = EpisodeStore(write_store(source, out, description=f"{src_format} → store", **options))
            else:
                store = EpisodeStore(write_store(source, staging / "store", description=f"{src_format} → store"))
                writer.write(store, out, **write_options)
        finally:
            source.close()
        stamp.update(
            {
                "from": src_format,
                "to": writer.name,
                "num_episodes": store.num_episodes,
                "num_frames": store.num_frames,
                "created_unix": time.time(),
            }
        )
        writer.stamp(out, stamp)
        _fsync_tree(out)
        if dst.exists():  # overwrite: move the old output aside, then swap in the new one
            os.replace(dst, staging / "previous")
        os.replace(out, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = _result(dst, src_format, writer.name, stamp, started, skipped=False)
    result.image_encoding = encoding
    return result


def _old_store_version(path: Path) -> int | None:
    """The version of the store at ``path`` when an older writer made it (re-convert it), else None."""
    try:
        version = int(read_record(path)["version"])
    except DataFormatError:
        return None  # not a readable store: the fingerprint check decides
    return version if version < CHUNKS_WRITTEN_VERSION else None


def _fsync_tree(path: Path) -> None:
    for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


def _result(
    dst: Path, src_format: str, dst_format: str, stamp: Mapping[str, Any], started: float, *, skipped: bool
) -> ConversionResult:
    return ConversionResult(
        dst,
        src_format,
        dst_format,
        int(stamp.get("num_episodes", -1)),
        int(stamp.get("num_frames", -1)),
        skipped,
        time.perf_counter() - started,
        disk_usage(dst),
    )
