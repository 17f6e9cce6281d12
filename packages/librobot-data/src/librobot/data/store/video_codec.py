"""The zarr v3 codec ``librobot.video``: an image array's chunks [N, C, H, W] uint8 as video clips.

Registered with zarr when this module is imported (``librobot.data.store`` imports it), so
zarr-python reads and writes these arrays itself: the writer goes through it (zarr's atomic chunk
writes, and its read-merge-rewrite of a partly filled chunk, stay as they are), and it is the
reference path that the fast chunk reader is tested against. It decodes with
``decode_clip_reference`` (ffmpeg's parser, frame by frame). Outside librobot, zarr does not know
the codec and refuses to open these arrays: read the store with librobot-data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.registry import register_codec

from librobot.data.errors import EpisodeError
from librobot.data.store.layout import image_encodings
from librobot.data.store.video_clip import CODEC_NAME, VideoEncoding, av_module, decode_clip_reference, encode_clip


@dataclass(frozen=True)
class VideoChunkCodec(ArrayBytesCodec):
    """Array-to-bytes codec; its configuration is the ``VideoEncoding`` the clips were made with."""

    is_fixed_size = False
    name: str
    codec: str
    bitstream: str
    pix_fmt: str
    quality: int | None
    options: tuple[tuple[str, str], ...]

    def __init__(
        self,
        *,
        name: str,
        codec: str,
        bitstream: str,
        pix_fmt: str,
        quality: int | None = None,
        options: Any = (),
    ) -> None:
        items = options.items() if isinstance(options, dict) else options
        for key, value in dict(
            name=name,
            codec=codec,
            bitstream=bitstream,
            pix_fmt=pix_fmt,
            quality=None if quality is None else int(quality),
            options=tuple(sorted((str(k), str(v)) for k, v in items)),
        ).items():
            object.__setattr__(self, key, value)

    @classmethod
    def from_encoding(cls, encoding: VideoEncoding) -> VideoChunkCodec:
        return cls(
            name=encoding.name,
            codec=encoding.codec,
            bitstream=encoding.bitstream,
            pix_fmt=encoding.pix_fmt,
            quality=encoding.quality,
            options=dict(encoding.options),
        )

    @property
    def encoding(self) -> VideoEncoding:
        return VideoEncoding(self.name, self.codec, self.bitstream, self.pix_fmt, self.quality, dict(self.options))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoChunkCodec:
        return cls(**dict(data.get("configuration") or {}))

    def to_dict(self) -> dict[str, Any]:
        config = {
            "name": self.name,
            "codec": self.codec,
            "bitstream": self.bitstream,
            "pix_fmt": self.pix_fmt,
            "quality": self.quality,
            "options": dict(self.options),
        }
        return {"name": CODEC_NAME, "configuration": config}

    def evolve_from_array_spec(self, array_spec: Any) -> VideoChunkCodec:
        return self

    def validate(self, *, shape: tuple[int, ...], dtype: Any, chunk_grid: Any) -> None:
        native = dtype.to_native_dtype() if hasattr(dtype, "to_native_dtype") else np.dtype(dtype)
        if native != np.uint8 or len(shape) != 4 or shape[1] not in (1, 3):
            raise ValueError(
                f"{CODEC_NAME} encodes uint8 images [N, C, H, W] with 1 or 3 channels, not {native} {list(shape)}"
            )
        chunks = getattr(chunk_grid, "chunk_shape", None)
        if chunks is not None and tuple(chunks[1:]) != tuple(shape[1:]):
            raise ValueError(f"{CODEC_NAME} chunks hold whole frames: chunk shape {list(chunks)}, array {list(shape)}")

    def _decode_sync(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        frames = decode_clip_reference(chunk_bytes.to_bytes(), tuple(chunk_spec.shape), self.bitstream)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(frames)

    async def _decode_single(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        return self._decode_sync(chunk_bytes, chunk_spec)

    def _encode_sync(self, chunk_array: Any, chunk_spec: Any) -> Any:
        frames = np.ascontiguousarray(chunk_array.as_numpy_array())
        return chunk_spec.prototype.buffer.from_bytes(encode_clip(frames, self.encoding))

    async def _encode_single(self, chunk_array: Any, chunk_spec: Any) -> Any:
        return self._encode_sync(chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: Any) -> int:
        raise NotImplementedError(f"{CODEC_NAME} clips vary in size")


register_codec(CODEC_NAME, VideoChunkCodec)


def create_video_array(root: Any, name: str, spec: Any, frames: int, encoding: VideoEncoding) -> Any:
    """An empty image array of ``root`` whose chunks are clips of ``frames`` frames."""
    av_module()  # a missing PyAV is named (with its extra) before anything is written
    if np.dtype(spec.dtype) != np.uint8 or len(spec.shape) != 3 or spec.shape[0] not in (1, 3):
        raise EpisodeError(
            f"'{spec.name}' is {spec.dtype} {list(spec.shape)}; video clips hold uint8 images with 1 or 3 "
            "channels: store it with image_encoding='raw'"
        )
    return root.create_array(
        name,
        shape=(0, *spec.shape),
        chunks=(frames, *spec.shape),
        dtype="uint8",
        serializer=VideoChunkCodec.from_encoding(encoding),
        compressors=None,
        fill_value=0,
        # one directory of chunk files: "/" would add three directories (three blocks on disk) a clip
        chunk_key_encoding={"name": "default", "separator": "."},
        config={"write_empty_chunks": True},
    )


def check_appended_encoding(
    path: Any, record: dict[str, Any], wanted: VideoEncoding | None, name: str | None, quality: int | None
) -> None:
    """Appending keeps a store's image encoding: naming another one is an error."""
    encodings = image_encodings(record).values()
    stored = {e.get("preset", "raw") for e in encodings}
    if name is not None and stored and stored != {wanted.name if wanted else "raw"}:
        raise EpisodeError(
            f"{path}: its images are stored as {sorted(stored)}; cannot append with image_encoding={name!r} "
            "(leave it out to keep the store's encoding)"
        )
    crf = {e.get("crf") for e in encodings}
    if quality is not None and stored and crf != {int(quality)}:
        raise EpisodeError(f"{path}: its images are stored at crf {sorted(crf, key=str)}, not {quality}")


class ClipTails:
    """Writes to video-encoded arrays, from the start of the clip they land in.

    zarr rewrites a partly filled chunk by decoding it, merging the new frames and encoding it
    again: for a lossy clip that would encode the earlier frames a second time (and a third, as
    more episodes arrive). The writer keeps, per array, the frames of its last partial clip as
    they were given, and writes them again with the new ones, so each clip is encoded from the
    original frames. A writer opened to append has no such frames: it reads them back (decoded)
    once, so those few frames are encoded twice, never more.
    """

    def __init__(self) -> None:
        self._tails: dict[str, tuple[int, np.ndarray]] = {}  # array name → (first frame, frames)

    def write(self, name: str, array: Any, data: np.ndarray, start: int) -> None:
        """``array[start:start + len(data)] = data``; ``array`` already has room for it."""
        size = array.chunks[0]
        first = start - start % size
        if first < start:
            tail = self._tails.get(name)
            if tail is not None and tail[0] == first and first + len(tail[1]) >= start:
                prefix = tail[1][: start - first]
            else:
                prefix = np.asarray(array[first:start])
            data = np.concatenate([prefix, data])
        stop = first + len(data)
        array[first:stop] = data
        last = stop - stop % size
        if last < stop:
            self._tails[name] = (last, data[last - first :].copy())
        else:
            self._tails.pop(name, None)
