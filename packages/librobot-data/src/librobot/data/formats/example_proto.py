"""tf.train.Example in the protobuf wire format, without TensorFlow or protobuf::

    message Example  { Features features = 1; }
    message Features { map<string, Feature> feature = 1; }   // entries: {string key = 1; Feature value = 2;}
    message Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    message BytesList { repeated bytes value = 1; }
    message FloatList { repeated float value = 1 [packed = true]; }
    message Int64List { repeated int64 value = 1 [packed = true]; }

The decoder accepts packed and unpacked repeated numbers and skips unknown fields, as protobuf
parsers must. Packed int64 lists decode with a vectorised varint decoder; ``decode_varints_reference``
is the plain loop it is tested against.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from librobot.data.errors import DataFormatError

BYTES, FLOAT, INT64 = "bytes", "float", "int64"
_KINDS = {1: BYTES, 2: FLOAT, 3: INT64}


class _Truncated(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Truncated
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DataFormatError("varint longer than 10 bytes")


def decode_varints_reference(payload: bytes) -> np.ndarray:
    values, pos = [], 0
    while pos < len(payload):
        value, pos = _varint(payload, pos)
        values.append(value - (1 << 64) if value >= 1 << 63 else value)
    return np.asarray(values, dtype=np.int64)


def decode_varints(payload: bytes) -> np.ndarray:
    """A packed run of int64 varints (two's complement for negatives), vectorised."""
    data = np.frombuffer(payload, dtype=np.uint8)
    if data.size == 0:
        return np.zeros(0, dtype=np.int64)
    if data[-1] >= 0x80:
        raise _Truncated
    ends = np.flatnonzero(data < 0x80)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise DataFormatError("varint longer than 10 bytes")
    position = np.arange(data.size) - np.repeat(starts, lengths)
    parts = (data & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts).view(np.int64)


def _fields(buf: bytes) -> Any:
    """(field number, wire type, value) for each field; LEN values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise DataFormatError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise _Truncated
        yield number, wire, value


def _decode_feature(buf: bytes) -> tuple[str, Any]:
    kind, values = BYTES, None
    for number, wire, value in _fields(buf):
        if number not in _KINDS or wire != 2:
            continue
        kind = _KINDS[number]
        items: list[Any] = []
        floats: list[np.ndarray] = []
        for inner_number, inner_wire, item in _fields(value):
            if inner_number != 1:
                continue
            if kind == BYTES:
                items.append(bytes(item))
            elif kind == FLOAT:
                floats.append(np.frombuffer(item, dtype="<f4") if inner_wire in (2, 5) else np.zeros(0, "<f4"))
            elif inner_wire == 2:
                floats.append(decode_varints(bytes(item)))
            else:
                floats.append(np.asarray([item - (1 << 64) if item >= 1 << 63 else item], dtype=np.int64))
        if kind == BYTES:
            values = items
        else:
            dtype = np.float32 if kind == FLOAT else np.int64
            values = np.concatenate(floats).astype(dtype) if floats else np.zeros(0, dtype=dtype)
    return kind, values if values is not None else []


def parse_example(data: bytes, *, where: str = "record") -> dict[str, tuple[str, Any]]:
    """feature name → (kind, values): bytes → list[bytes]; float → float32 array; int64 → int64 array."""
    try:
        out: dict[str, tuple[str, Any]] = {}
        for number, wire, features in _fields(bytes(data)):
            if number != 1 or wire != 2:
                continue
            for entry_number, entry_wire, entry in _fields(features):
                if entry_number != 1 or entry_wire != 2:
                    continue
                key, feature = "", b""
                for n, w, v in _fields(entry):
                    if n == 1 and w == 2:
                        key = bytes(v).decode("utf-8")
                    elif n == 2 and w == 2:
                        feature = v
                out[key] = _decode_feature(feature)
        return out
    except _Truncated:
        raise DataFormatError(f"{where}: tf.train.Example is truncated") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{where}: feature name is not UTF-8 ({exc})") from exc


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def encode_example(features: dict[str, tuple[str, Any]]) -> bytes:
    """Serialize name → (kind, values) as a tf.train.Example (packed numbers, keys sorted)."""
    entries = bytearray()
    for key in sorted(features):
        kind, values = features[key]
        if kind == BYTES:
            inner = b"".join(_len_field(1, bytes(v)) for v in values)
            feature = _len_field(1, inner)
        elif kind == FLOAT:
            packed = np.asarray(values, dtype="<f4").tobytes()
            feature = _len_field(2, _len_field(1, packed) if packed else b"")
        elif kind == INT64:
            packed = b"".join(_encode_varint(int(v)) for v in np.asarray(values, dtype=np.int64).ravel())
            feature = _len_field(3, _len_field(1, packed) if packed else b"")
        else:
            raise ValueError(f"feature '{key}': kind must be bytes, float or int64, got {kind!r}")
        entries += _len_field(1, _len_field(1, key.encode("utf-8")) + _len_field(2, feature))
    return _len_field(1, bytes(entries))
