"""TFRecord files: a sequence of ``uint64 length | uint32 masked_crc32c(length) | data |
uint32 masked_crc32c(data)`` records, little-endian. Both CRCs are checked on read."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from librobot.data.errors import DataFormatError
from librobot.data.formats.crc32c import masked_crc32c


def write_records(path: str | Path, records: Iterable[bytes]) -> int:
    """Write ``records`` to a new file; returns the number of bytes written."""
    written = 0
    with open(path, "wb") as handle:
        for data in records:
            header = struct.pack("<Q", len(data))
            chunk = header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))
            handle.write(chunk)
            written += len(chunk)
    return written


def index_records(path: str | Path) -> list[tuple[int, int]]:
    """(offset of data, length) of every record, reading only the headers (lengths are CRC-checked)."""
    path = Path(path)
    out = []
    size = path.stat().st_size
    with open(path, "rb") as handle:
        offset = 0
        while offset < size:
            header = handle.read(12)
            if len(header) < 12:
                raise DataFormatError(f"{path}: record {len(out)} at byte {offset} is truncated (incomplete header)")
            (length,) = struct.unpack("<Q", header[:8])
            (crc,) = struct.unpack("<I", header[8:])
            if masked_crc32c(header[:8]) != crc:
                raise DataFormatError(f"{path}: record {len(out)} at byte {offset}: length CRC mismatch (corrupt file)")
            if offset + 12 + length + 4 > size:
                raise DataFormatError(
                    f"{path}: record {len(out)} at byte {offset} is truncated ({length} data bytes announced)"
                )
            out.append((offset + 12, length))
            offset += 12 + length + 4
            handle.seek(offset)
    return out


def read_record(path: str | Path, offset: int, length: int, *, number: int = 0) -> bytes:
    """One record's data, its CRC checked."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(length + 4)
    if len(data) < length + 4:
        raise DataFormatError(f"{path}: record {number} is truncated")
    (crc,) = struct.unpack("<I", data[length:])
    if masked_crc32c(data[:length]) != crc:
        raise DataFormatError(f"{path}: record {number}: data CRC mismatch (corrupt file)")
    return data[:length]


def iter_records(path: str | Path) -> Iterator[bytes]:
    for number, (offset, length) in enumerate(index_records(path)):
        yield read_record(path, offset, length, number=number)
