"""CRC-32C (Castagnoli), as TFRecord uses it, in numpy: no compiled dependency.

``crc32c_reference`` is the textbook byte-at-a-time table loop. ``crc32c`` splits long inputs into
equal lanes, runs the table loop on all lanes at once with numpy, and chains the lane CRCs with the
GF(2)-linear "advance the register over L zero bytes" map (a 32x32 bit matrix applied through four
byte tables), which is exactly the CRC of the concatenation. Tests compare the two paths.
"""

from __future__ import annotations

import functools

import numpy as np

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_LANE = 512  # bytes per lane in the vectorised path
_FAST_MIN = 32768  # below this the table loop wins


def _make_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _make_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def crc32c_reference(data: bytes | bytearray | memoryview) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE_LIST
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@functools.lru_cache(maxsize=8)
def _zeros_operator(length: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """Byte tables of the linear map r -> register after ``length`` zero bytes from register r."""
    regs = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
    for _ in range(length):
        regs = _TABLE[regs & 0xFF] ^ (regs >> 8)
    tables = []
    for q in range(4):
        cols = regs[8 * q : 8 * q + 8]
        values = np.zeros(256, dtype=np.uint32)
        for bit in range(8):
            values ^= np.where((np.arange(256) >> bit) & 1, cols[bit], 0).astype(np.uint32)
        tables.append([int(v) for v in values])
    return tables[0], tables[1], tables[2], tables[3]


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C of ``data`` (vectorised over lanes for inputs of 32 KiB and more)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    n = buf.size
    if n < _FAST_MIN:
        return crc32c_reference(data)
    lanes = n // _LANE
    block = np.ascontiguousarray(buf[: lanes * _LANE].reshape(lanes, _LANE).T)  # row j = byte j of every lane
    regs = np.zeros(lanes, dtype=np.uint32)
    for row in block:  # raw CRC (register starts at 0) of every lane at once
        regs = _TABLE[(regs ^ row) & 0xFF] ^ (regs >> 8)
    t0, t1, t2, t3 = _zeros_operator(_LANE)
    crc = 0xFFFFFFFF
    for lane_crc in regs.tolist():  # crc(A + B) = advance(crc(A), |B| zeros) ^ raw_crc(B)
        crc = t0[crc & 0xFF] ^ t1[(crc >> 8) & 0xFF] ^ t2[(crc >> 16) & 0xFF] ^ t3[crc >> 24] ^ lane_crc
    table = _TABLE_LIST
    for byte in bytes(buf[lanes * _LANE :]):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC: rotate right by 15 and add a constant, so CRCs of CRCs stay strong."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF
