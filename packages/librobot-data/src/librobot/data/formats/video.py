"""MP4 video through PyAV (no torchvision here): encode episodes, decode ranges, seek to frames.

Presets (``VideoSettings.preset``):
- ``lerobot``: AV1 (libsvtav1), yuv420p, crf 30, a keyframe every 2 frames — LeRobot's defaults.
- ``h264``: libx264, yuv420p, crf 23, keyframe every 2 frames (decodes everywhere).
- ``lossless``: libx264rgb with qp 0 on rgb24 — bit-exact round trips, bigger files.
yuv420p halves the colour resolution, so lossy presets blur colour edges on small images.

Frames are converted to arrays with a swscale context of this process and thread, single-threaded
(``frame_array``), never PyAV's shared one: that one starts slice threads on first use, and a
DataLoader worker forked afterwards hangs for good the next time it converts a frame (its copy of
the context waits on threads that were not forked).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.extras import require
from librobot.data.errors import DataFormatError

_EXTRA = "librobot-data[video]"


def _av(purpose: str = "encoding and decoding mp4 videos") -> Any:
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr otherwise
    av = require("av", extra=_EXTRA, purpose=purpose)
    av.logging.set_level(av.logging.ERROR)
    return av


_local = threading.local()
_inherited: list[Any] = []  # contexts made before a fork: kept referenced, so never freed in the child


def _reformatter(av: Any) -> Any:
    """This thread's swscale context, made in this process (see the module docstring)."""
    pid = os.getpid()
    mine = getattr(_local, "reformatter", None)
    if mine is None or mine[0] != pid:
        if mine is not None:
            _inherited.append(mine[1])
        mine = _local.reformatter = (pid, av.video.reformatter.VideoReformatter())
    return mine[1]


def frame_array(frame: Any, fmt: str) -> np.ndarray:
    """A decoded frame as uint8 [H, W, 3] ("rgb24") or [H, W] ("gray"): a view of a converted
    copy, converted on one thread by this process's own context. A gray frame of full-range
    luma (x264's 4:0:0 clips, colour range unspecified) is read as it is."""
    av = _av()
    if not (fmt == "gray" and frame.format.name in ("gray", "yuv420p", "yuv444p") and frame.color_range != 1):
        frame = _reformatter(av).reformat(frame, format=fmt, threads=1)
    plane, width = frame.planes[0], frame.width
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    if fmt == "gray":
        return rows[:, :width]
    return rows[:, : 3 * width].reshape(plane.height, width, 3)


@dataclass(frozen=True)
class VideoSettings:
    codec: str = "libsvtav1"
    pix_fmt: str = "yuv420p"
    options: Mapping[str, str] = field(default_factory=lambda: {"crf": "30", "g": "2"})

    @classmethod
    def preset(cls, name: str) -> VideoSettings:
        presets = {
            "lerobot": cls(),
            "h264": cls("libx264", "yuv420p", {"crf": "23", "g": "2"}),
            "lossless": cls("libx264rgb", "rgb24", {"qp": "0", "g": "2"}),
        }
        if name not in presets:
            raise ValueError(f"unknown video preset {name!r}; one of {sorted(presets)}")
        return presets[name]

    @property
    def lossless(self) -> bool:
        return self.pix_fmt == "rgb24" and str(self.options.get("qp", "")) == "0"


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class VideoEncoder:
    """Appends RGB frames [H, W, 3] (or gray [H, W, 1]) to one mp4; pts count frames at ``fps``."""

    def __init__(self, path: str | Path, *, fps: float, width: int, height: int, settings: VideoSettings) -> None:
        av = _av()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frames = 0
        self.bytes = 0
        self._container = av.open(str(self.path), mode="w")
        try:
            self._stream = self._container.add_stream(settings.codec, rate=_rate(fps))
        except Exception as exc:
            self._container.close()
            raise DataFormatError(f"{self.path}: video codec {settings.codec!r} is not available: {exc}") from exc
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = settings.pix_fmt
        self._stream.options = dict(settings.options)
        self._av = av

    def add(self, frames: Iterable[np.ndarray]) -> None:
        for frame in frames:
            fmt = "gray" if frame.shape[-1] == 1 else "rgb24"
            image = frame[..., 0] if fmt == "gray" else frame
            video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
            video_frame.pts = self.frames
            self.frames += 1
            self._mux(self._stream.encode(video_frame))

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self.bytes += packet.size
            self._container.mux(packet)

    def close(self) -> None:
        try:
            self._mux(self._stream.encode())
        finally:
            self._container.close()


def encode_video(path: str | Path, frames: np.ndarray, *, fps: float, settings: VideoSettings) -> int:
    """Write frames [T, H, W, C] to ``path``; returns the encoded bytes."""
    _, h, w, _ = frames.shape
    encoder = VideoEncoder(path, fps=fps, width=w, height=h, settings=settings)
    try:
        encoder.add(frames)
    finally:
        encoder.close()
    return encoder.bytes


def _to_array(frame: Any, channels: int) -> np.ndarray:
    if channels == 1:
        return _reformatter(_av()).reformat(frame, format="gray", threads=1).to_ndarray()[..., None]
    return frame_array(frame, "rgb24")


class VideoReader:
    """Random access to one mp4 by timestamp: seek to the keyframe before, decode forward.

    Keeps the file open between calls (reopen it in each process; do not share across a fork).
    """

    def __init__(self, path: str | Path, *, channels: int = 3) -> None:
        av = _av()
        self.path = Path(path)
        self.channels = channels
        if not self.path.is_file():
            raise DataFormatError(f"video file {self.path} is missing")
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
        except Exception as exc:
            raise DataFormatError(f"{self.path}: cannot open video ({exc}); the file is truncated or corrupt") from exc
        # One decoding thread: frame-threaded decoders keep working in the background, and a
        # DataLoader forking its workers while such a thread holds a lock deadlocks the workers.
        # Parallelism comes from the workers instead.
        self._stream.codec_context.thread_count = 1
        self._errors = (av.error.FFmpegError,)

    def _decode_from(self, start_s: float) -> Any:
        stream = self._stream
        offset = int(max(start_s, 0.0) / stream.time_base) + (stream.start_time or 0)
        self._container.seek(offset, stream=stream, backward=True, any_frame=False)
        return self._container.decode(stream)

    def read_range(
        self, start_s: float, count: int, fps: float, *, tolerance_s: float = 1e-4, what: str = ""
    ) -> np.ndarray:
        """``count`` consecutive frames starting at time ``start_s`` (frames at start_s + i/fps)."""
        out: list[np.ndarray] = []
        first = start_s - tolerance_s
        try:
            for frame in self._decode_from(start_s):
                if frame.time is None or frame.time < first:
                    continue
                expected = start_s + len(out) / fps
                if abs(frame.time - expected) > tolerance_s + 0.5 / fps:
                    raise DataFormatError(
                        f"{self.path}{what}: frame at t={frame.time:.4f}s where t={expected:.4f}s was expected "
                        f"(a frame is missing or the video's frame rate is not {fps})"
                    )
                out.append(_to_array(frame, self.channels))
                if len(out) == count:
                    break
        except self._errors as exc:
            raise DataFormatError(f"{self.path}{what}: video cannot be decoded ({exc}); truncated or corrupt") from exc
        if len(out) != count:
            raise DataFormatError(
                f"{self.path}{what}: needs {count} frames from t={start_s:.4f}s but only {len(out)} could be "
                f"decoded; the video is truncated or shorter than the data"
            )
        return np.stack(out)

    def read_times(self, times: np.ndarray, *, tolerance_s: float = 1e-4) -> np.ndarray:
        """Frames at the given timestamps (any order, repeats allowed), one seek per call."""
        times = np.asarray(times, dtype=np.float64)
        wanted = np.unique(times)
        found: dict[float, np.ndarray] = {}
        try:
            for frame in self._decode_from(float(wanted[0])):
                if frame.time is None:
                    continue
                hit = np.abs(wanted - frame.time) <= tolerance_s
                for t in wanted[hit]:
                    found[float(t)] = _to_array(frame, self.channels)
                if frame.time > wanted[-1] + tolerance_s or len(found) == len(wanted):
                    break
        except self._errors as exc:
            raise DataFormatError(f"{self.path}: video cannot be decoded ({exc}); truncated or corrupt") from exc
        missing = [float(t) for t in wanted if float(t) not in found]
        if missing:
            raise DataFormatError(f"{self.path}: no frame at t={missing[:3]} s (truncated video or wrong timestamps)")
        return np.stack([found[float(t)] for t in times])

    def close(self) -> None:
        self._container.close()
