"""TFRecord framing, CRC-32C and the tf.train.Example wire format against known bytes."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from librobot.data.errors import DataFormatError
from librobot.data.formats.crc32c import crc32c, crc32c_reference, masked_crc32c
from librobot.data.formats.example_proto import decode_varints, decode_varints_reference, encode_example, parse_example
from librobot.data.formats.tfrecord import iter_records, write_records

# tf.train.Example serialised by the protobuf library (deterministic, keys sorted) from
# {"steps/action": float [0.5, -1.25, 3.0], "steps/is_first": int64 [1, 0, -3, 300, 2**40],
#  "steps/language_instruction": bytes [b"pick", b"place"]}
GOLDEN = bytes.fromhex(
    "0a7d0a200a0c73746570732f616374696f6e1210120e0a0c0000003f0000a0bf000040400a2a0a0e73746570732f69735f"
    "666972737412181a160a140100fdffffffffffffffff01ac028080808080200a2d0a1a73746570732f6c616e67756167655f"
    "696e737472756374696f6e120f0a0d0a047069636b0a05706c616365"
)


def test_crc32c_known_values_and_fast_path_matches_reference():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 zero bytes
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    rng = np.random.default_rng(0)
    for n in (32768, 32769, 100_003, 1 << 20):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c(data) == crc32c_reference(data), n


def test_example_encoding_is_byte_exact_and_parses():
    features = {
        "steps/action": ("float", [0.5, -1.25, 3.0]),
        "steps/is_first": ("int64", [1, 0, -3, 300, 2**40]),
        "steps/language_instruction": ("bytes", [b"pick", b"place"]),
    }
    assert encode_example(features) == GOLDEN
    parsed = parse_example(GOLDEN)
    assert parsed["steps/action"][0] == "float" and parsed["steps/action"][1].tolist() == [0.5, -1.25, 3.0]
    assert parsed["steps/is_first"][1].tolist() == [1, 0, -3, 300, 2**40]
    assert parsed["steps/language_instruction"] == ("bytes", [b"pick", b"place"])


def test_unpacked_repeated_numbers_and_unknown_fields_are_accepted():
    # Int64List written unpacked (field 1, wire type 0 per value) and FloatList unpacked (wire type 5),
    # plus an unknown varint field 7 inside the Feature that parsers must skip.
    ints = bytes([0x08, 0x05, 0x08, 0x96, 0x01])  # 5, 150
    floats = bytes([0x0D]) + struct.pack("<f", 2.5)
    feature_i = bytes([0x38, 0x01, 0x1A, len(ints)]) + ints
    feature_f = bytes([0x12, len(floats)]) + floats

    def entry(key: bytes, feature: bytes) -> bytes:
        body = bytes([0x0A, len(key)]) + key + bytes([0x12, len(feature)]) + feature
        return bytes([0x0A, len(body)]) + body

    features = entry(b"i", feature_i) + entry(b"f", feature_f)
    example = bytes([0x0A, len(features)]) + features
    parsed = parse_example(example)
    assert parsed["i"][1].tolist() == [5, 150] and parsed["f"][1].tolist() == [2.5]
    with pytest.raises(DataFormatError, match="truncated"):
        parse_example(example[:-3], where="x.tfrecord")


def test_vectorised_varints_match_the_reference_loop():
    rng = np.random.default_rng(1)
    values = np.concatenate(
        [rng.integers(-(2**63), 2**63 - 1, 500, dtype=np.int64), [0, 1, -1, 127, 128, 2**63 - 1, -(2**63)]]
    )
    payload = encode_example({"x": ("int64", values)})
    parsed = parse_example(payload)["x"][1]
    np.testing.assert_array_equal(parsed, values)
    raw = b"".join(bytes([0x80 | 0x7F] * k + [0x01]) for k in range(10))
    np.testing.assert_array_equal(decode_varints(raw), decode_varints_reference(raw))


def test_tfrecord_framing_round_trip_and_masked_crc(tmp_path):
    records = [b"", b"a", bytes(range(256)) * 200]
    path = tmp_path / "x.tfrecord"
    write_records(path, records)
    assert list(iter_records(path)) == records
    raw = path.read_bytes()
    assert struct.unpack("<Q", raw[:8])[0] == 0
    assert struct.unpack("<I", raw[8:12])[0] == masked_crc32c(raw[:8])
    crc = crc32c(b"a")
    assert masked_crc32c(b"a") == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)
