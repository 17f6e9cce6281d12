"""Image chunks as short video clips: the encodings, and one chunk's bytes ⇄ frames [N, C, H, W].

Why clips inside the zarr chunks rather than per-episode mp4 files beside the store: the store's
machinery keeps working unchanged. A clip is one chunk file, so appends and trims, the atomic
chunk writes, ``chunk_sums.jsonl`` and ``librobot data verify`` treat it like any other chunk; a
random read decodes one clip of N frames (not an episode from its start); and zarr-python reads
the store through the codec registered in ``video_codec.py``. A decoded-chunk cache
(``chunk_cache.py``) makes repeated random reads cost what raw chunks cost.

A clip file: a 16-byte header (magic ``LRVC``, format version, frame count, packet count, crc32 of
the payload), the packet sizes (uint32 each), then the packets: the codec's raw bitstream (h264
Annex B or AV1 OBUs), one keyframe first, no container. Without a container a read is one decoder
call per packet (an mp4 parse costs about as much as decoding a 96x96 clip); the crc makes a
changed or truncated file an error instead of garbled frames.

Two decoders read a clip: ``decode_clip`` (the fast path: packets from the header's table) and
``decode_clip_reference`` (ffmpeg's bitstream parser finds the packets, frame by frame); tests
check they agree.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from librobot.data.formats.video import _av, frame_array

CODEC_NAME = "librobot.video"  # the zarr codec (video_codec.py)
MAGIC = b"LRVC"
CLIP_VERSION = 1
_HEADER = struct.Struct("<4sBxHII")  # magic, version, (pad), frames, packets, crc32 of the payload
VIDEO_CHUNK_FRAMES = 32  # frames per clip: ~4 KiB (one file-system block) for a 96x96 camera
DECODERS = {"h264": ("h264",), "av1": ("libdav1d", "libaom-av1")}  # ffmpeg's own av1 decoder needs a GPU


class ClipError(ValueError):
    """A clip's bytes are not a whole, unchanged clip (the reader turns this into StoreChunkError)."""


def av_module() -> Any:
    return _av(purpose="video-encoded image chunks of an episode store")


@dataclass(frozen=True)
class VideoEncoding:
    """How image chunks become clips. ``quality`` is the encoder's crf (lower: better, bigger);
    ``lossless`` presets use qp 0 on RGB (or gray) and round-trip bit-exactly."""

    name: str
    codec: str  # the ffmpeg encoder
    bitstream: str  # what a decoder needs: "h264" or "av1"
    pix_fmt: str
    quality: int | None
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def lossless(self) -> bool:
        return self.quality is None

    def pix_fmt_for(self, channels: int, height: int, width: int) -> str:
        if channels == 1 and self.bitstream == "h264":
            return "gray"  # x264 codes luma only; lossless at qp 0 too
        if channels == 1 and self.lossless:
            raise ValueError(f"the {self.name!r} image encoding takes 3-channel images; use 'lossless' for gray ones")
        if self.pix_fmt == "yuv420p" and (height % 2 or width % 2) and self.bitstream == "h264":
            return "yuv444p"  # x264 cannot halve the chroma of an odd-sized frame
        return self.pix_fmt

    def encoder(self, channels: int) -> tuple[str, dict[str, str]]:
        """The ffmpeg encoder and its options for images with ``channels`` channels."""
        codec = "libx264" if channels == 1 and self.codec == "libx264rgb" else self.codec
        options = dict(self.options)
        if self.bitstream == "h264":
            options["threads"] = "1"  # tiny frames: threads cost more than they save, and bytes stay reproducible
            options["qp" if self.lossless else "crf"] = "0" if self.lossless else str(self.quality)
        else:
            options["crf"] = str(self.quality)
        return codec, options

    def to_record(self, chunk_frames: int) -> dict[str, Any]:
        """What the store's record says about an array encoded this way (``librobot data info``)."""
        return {
            "encoding": "video",
            "preset": self.name,
            "codec": self.codec,
            "bitstream": self.bitstream,
            "pix_fmt": self.pix_fmt,
            "crf": self.quality,
            "lossless": self.lossless,
            "frames_per_clip": chunk_frames,
        }


ENCODINGS = {
    "h264": VideoEncoding("h264", "libx264", "h264", "yuv420p", 23, {"tune": "fastdecode"}),
    "av1": VideoEncoding("av1", "libsvtav1", "av1", "yuv420p", 30, {"preset": "8"}),
    "lossless": VideoEncoding("lossless", "libx264rgb", "h264", "rgb24", None, {"tune": "fastdecode"}),
}
DEFAULT_VIDEO = "h264"  # at 96x96 it decodes ~1.4x faster than AV1 for the same blocks on disk (README)
IMAGE_ENCODINGS = ("raw", "video", *ENCODINGS)


def video_encoding(name: str, quality: int | None = None) -> VideoEncoding | None:
    """The encoding called ``name`` ("raw" → None; "video" → the default lossy preset), with its
    crf replaced by ``quality`` when given."""
    if name == "raw":
        return None
    preset = ENCODINGS.get(DEFAULT_VIDEO if name == "video" else name)
    if preset is None:
        raise ValueError(f"image_encoding must be one of {list(IMAGE_ENCODINGS)}, got {name!r}")
    if quality is None:
        return preset
    if preset.lossless:
        raise ValueError(f"the {name!r} image encoding is lossless and takes no quality (crf)")
    return VideoEncoding(preset.name, preset.codec, preset.bitstream, preset.pix_fmt, int(quality), preset.options)


# ---------------------------------------------------------------------- encoding
def encode_clip(frames: np.ndarray, encoding: VideoEncoding) -> bytes:
    """uint8 frames [N, C, H, W] (C = 1 or 3) → the bytes of one clip."""
    av = av_module()
    n, channels, height, width = frames.shape
    if channels not in (1, 3) or frames.dtype != np.uint8:
        raise ValueError(f"video clips hold uint8 images with 1 or 3 channels, got {frames.dtype} {frames.shape}")
    codec, options = encoding.encoder(channels)
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = encoding.pix_fmt_for(channels, height, width)
    ctx.time_base, ctx.framerate = Fraction(1, 30), Fraction(30)  # pts count frames; the rate only steers rate control
    ctx.options = {**options, "g": str(n)}  # one keyframe per clip: a clip is decoded whole anyway
    fmt = "gray" if channels == 1 else "rgb24"
    packets: list[bytes] = []
    try:
        for i in range(n):
            image = frames[i, 0] if channels == 1 else frames[i].transpose(1, 2, 0)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
            frame.pts = i
            packets.extend(bytes(p) for p in ctx.encode(frame))
        packets.extend(bytes(p) for p in ctx.encode(None))
    except av.error.FFmpegError as exc:
        raise ValueError(f"{codec} cannot encode {width}x{height} frames ({exc}); store these images raw") from exc
    payload = b"".join(packets)
    header = _HEADER.pack(MAGIC, CLIP_VERSION, n, len(packets), zlib.crc32(payload))
    return header + struct.pack(f"<{len(packets)}I", *(len(p) for p in packets)) + payload


# ---------------------------------------------------------------------- decoding
def _packets(raw: bytes | memoryview, frames: int) -> tuple[memoryview, list[int]]:
    """The payload and packet sizes of a clip, after checking its header, length and crc32."""
    raw = memoryview(raw)
    if len(raw) < _HEADER.size:
        raise ClipError(f"{len(raw)} bytes is shorter than a clip header")
    magic, version, count, packets, crc = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise ClipError(f"not a librobot video clip (starts with {bytes(magic)!r})")
    if version > CLIP_VERSION:
        raise ClipError(f"clip format {version} is newer than this librobot-data reads ({CLIP_VERSION}); upgrade it")
    if count != frames:
        raise ClipError(f"the clip holds {count} frames where the array's chunks hold {frames}")
    start = _HEADER.size + 4 * packets
    sizes = list(struct.unpack_from(f"<{packets}I", raw, _HEADER.size)) if len(raw) >= start else []
    if len(raw) < start or start + sum(sizes) != len(raw):
        raise ClipError(f"{len(raw)} bytes where the clip's header describes {start + sum(sizes)}: truncated or padded")
    payload = raw[start:]
    if zlib.crc32(payload) != crc:
        raise ClipError(f"payload crc32 {zlib.crc32(payload):08x} is not the {crc:08x} it was written with")
    return payload, sizes


def _decoder(av: Any, bitstream: str) -> Any:
    for name in DECODERS.get(bitstream, ()):
        try:
            ctx = av.CodecContext.create(name, "r")
        except Exception:  # this ffmpeg build lacks it: try the next
            continue
        ctx.thread_count = 1  # no decoder threads left behind when DataLoader workers fork
        return ctx
    raise ClipError(f"this PyAV build has no decoder for {bitstream!r} (tried {list(DECODERS.get(bitstream, ()))})")


def _store(frame: Any, out: np.ndarray, i: int) -> None:
    if i >= len(out):
        raise ClipError(f"the clip decodes to more than the {len(out)} frames it says it holds")
    if out.shape[1] == 1:
        out[i, 0] = frame_array(frame, "gray")
    else:
        out[i] = frame_array(frame, "rgb24").transpose(2, 0, 1)


def _decode(packets: Any, shape: tuple[int, ...], bitstream: str, out: np.ndarray | None) -> np.ndarray:
    av = av_module()
    out = np.empty(shape, np.uint8) if out is None else out
    ctx, count = _decoder(av, bitstream), 0
    try:
        for packet in [*packets, None]:
            for frame in ctx.decode(packet):
                if (frame.height, frame.width) != shape[2:]:
                    raise ClipError(f"a {frame.width}x{frame.height} frame in a clip of {shape[3]}x{shape[2]} images")
                _store(frame, out, count)
                count += 1
    except av.error.FFmpegError as exc:
        raise ClipError(f"the {bitstream} decoder failed: {exc}") from exc
    if count != shape[0]:
        raise ClipError(f"decoded {count} of the clip's {shape[0]} frames")
    return out


def decode_clip(raw: bytes, shape: tuple[int, ...], bitstream: str, out: np.ndarray | None = None) -> np.ndarray:
    """One clip → uint8 frames of ``shape`` [N, C, H, W] (into ``out`` when given). Raises ClipError."""
    av = av_module()
    payload, sizes = _packets(raw, shape[0])
    offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    packets = (av.Packet(payload[a:b]) for a, b in itertools.pairwise(offsets))
    return _decode(packets, shape, bitstream, out)


def decode_clip_reference(raw: bytes, shape: tuple[int, ...], bitstream: str) -> np.ndarray:
    """The same frames, with ffmpeg's bitstream parser finding the packets: the reference path."""
    av = av_module()
    payload, _ = _packets(raw, shape[0])
    parser = _decoder(av, bitstream)
    packets = [*parser.parse(bytes(payload)), *parser.parse(None)]
    return _decode(packets, shape, bitstream, None)
