"""The Feetech STS/SCS serial servo protocol: packets, checksum, control table (pure, no I/O).

Instruction packet (host → servo)::

    0xFF 0xFF  ID  LEN  INSTR  P1 … Pn  CHK        LEN = n + 2
    CHK = ~(ID + LEN + INSTR + P1 + … + Pn) & 0xFF

Status packet (servo → host) has the same frame with the servo's error byte in place of INSTR.
ID 0xFE is the broadcast id: nobody answers a broadcast (SYNC_READ excepted: each listed servo
answers with its own status packet, in the order listed). Multi-byte registers are
little-endian on STS servos and big-endian on SCS servos.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from librobot.core.errors import LibroBotError

HEADER = b"\xff\xff"
BROADCAST_ID = 0xFE
MAX_ID = 0xFD  # 0..253 are servo ids
MAX_PARAMS = 250  # LEN is one byte and counts INSTR + CHK


class FeetechError(LibroBotError, OSError):
    """A Feetech bus transaction failed (framing, checksum, timeout or a servo-reported error)."""


class FeetechChecksumError(FeetechError):
    """A packet arrived whole but its checksum does not match its bytes (line noise, wrong baud rate)."""


class FeetechTimeoutError(FeetechError):
    """No reply, or a reply cut short (truncated frame) before the read timeout."""


class FeetechFrameError(FeetechError):
    """A packet is malformed (bad length, wrong servo id) or a request is invalid before sending."""


class FeetechStatusError(FeetechError):
    """A servo answered with error bits set (overload, overheat, voltage…)."""


class Instruction(IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    RESET = 0x06
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83


# Bits of the status packet's error byte.
STATUS_ERRORS = {0x01: "input voltage", 0x02: "sensor", 0x04: "overheat", 0x08: "over-current", 0x20: "overload"}


@dataclass(frozen=True)
class Register:
    name: str
    address: int
    size: int


# STS3215 (the SO-100's servo) control table: the registers this driver uses.
MODEL_NUMBER = Register("model_number", 3, 2)
ID = Register("id", 5, 1)
BAUD_RATE = Register("baud_rate", 6, 1)
MIN_ANGLE_LIMIT = Register("min_angle_limit", 9, 2)
MAX_ANGLE_LIMIT = Register("max_angle_limit", 11, 2)
TORQUE_ENABLE = Register("torque_enable", 40, 1)
ACCELERATION = Register("acceleration", 41, 1)
GOAL_POSITION = Register("goal_position", 42, 2)
GOAL_TIME = Register("goal_time", 44, 2)
GOAL_SPEED = Register("goal_speed", 46, 2)
LOCK = Register("lock", 55, 1)
PRESENT_POSITION = Register("present_position", 56, 2)
PRESENT_SPEED = Register("present_speed", 58, 2)
PRESENT_LOAD = Register("present_load", 60, 2)
PRESENT_VOLTAGE = Register("present_voltage", 62, 1)
PRESENT_TEMPERATURE = Register("present_temperature", 63, 1)
MOVING = Register("moving", 66, 1)
PRESENT_CURRENT = Register("present_current", 69, 2)

STS3215_MODEL = 777
TICKS_PER_TURN = 4096  # 12-bit magnetic encoder
SIGN_BIT = 15  # STS speed/position registers are sign-magnitude with the sign in bit 15


def checksum(body: bytes | bytearray) -> int:
    """Checksum of ID, LEN, INSTR/ERROR and parameters."""
    return (~sum(body)) & 0xFF


def _frame(first: int, code: int, params: bytes) -> bytes:
    if len(params) > MAX_PARAMS:
        raise FeetechFrameError(f"packet has {len(params)} parameter bytes; the protocol allows at most {MAX_PARAMS}")
    body = bytes((first, len(params) + 2, code)) + params
    return HEADER + body + bytes((checksum(body),))


def encode_instruction(servo_id: int, instruction: int, params: bytes = b"") -> bytes:
    """An instruction packet; rejects ids outside 0..253 and the broadcast id for replies."""
    if not (0 <= servo_id <= MAX_ID or servo_id == BROADCAST_ID):
        raise FeetechFrameError(f"servo id must be 0..{MAX_ID} or {BROADCAST_ID} (broadcast), got {servo_id}")
    return _frame(servo_id, int(instruction), bytes(params))


def encode_status(servo_id: int, error: int = 0, params: bytes = b"") -> bytes:
    """A status packet (what a servo sends back); used by the simulated bus."""
    return _frame(servo_id, error, bytes(params))


@dataclass(frozen=True)
class Packet:
    """A decoded packet: ``code`` is the instruction (host → servo) or error byte (servo → host)."""

    servo_id: int
    code: int
    params: bytes

    def raw(self) -> bytes:
        return _frame(self.servo_id, self.code, self.params)


def decode_packet(frame: bytes) -> Packet:
    """Decode one complete frame; raises FeetechFrameError / FeetechChecksumError naming what is wrong."""
    if len(frame) < 6 or frame[:2] != HEADER:
        raise FeetechFrameError(f"not a Feetech packet (need 0xFF 0xFF + at least 4 bytes): {frame.hex(' ')}")
    length = frame[3]
    if length < 2 or len(frame) != 4 + length:
        raise FeetechFrameError(
            f"packet length byte says {length} but frame has {len(frame) - 4} bytes after it: {frame.hex(' ')}"
        )
    body, got = frame[2:-1], frame[-1]
    want = checksum(body)
    if got != want:
        raise FeetechChecksumError(
            f"checksum mismatch in packet of servo {frame[2]}: got 0x{got:02x}, expected 0x{want:02x} ({frame.hex(' ')})"
        )
    return Packet(frame[2], frame[4], bytes(frame[5:-1]))


class PacketReader:
    """Incremental parser for a byte stream: feeds bytes in, yields whole frames out.

    Garbage before a header is skipped (resynchronisation); a frame whose checksum fails is
    reported in ``errors`` and dropped, like a real servo ignores it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.errors: list[str] = []

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        out: list[Packet] = []
        while True:
            start = self._buf.find(HEADER)
            if start < 0:
                del self._buf[: max(0, len(self._buf) - 1)]  # keep a trailing 0xFF that may start a header
                return out
            del self._buf[:start]
            # 0xFF 0xFF 0xFF…: the id cannot be 0xFF, so the extra 0xFF is noise before the header
            while len(self._buf) >= 3 and self._buf[2] == 0xFF:
                del self._buf[0]
            if len(self._buf) < 4:
                return out
            length = self._buf[3]
            if length < 2:
                self.errors.append(f"bad length byte {length}")
                del self._buf[:2]
                continue
            if len(self._buf) < 4 + length:
                return out
            frame = bytes(self._buf[: 4 + length])
            del self._buf[: 4 + length]
            try:
                out.append(decode_packet(frame))
            except FeetechError as exc:
                self.errors.append(str(exc))

    def pending(self) -> int:
        return len(self._buf)


# ---------------------------------------------------------------------------- value encoding
def encode_value(value: int, size: int, *, endian: str = "little", signed: bool = False) -> bytes:
    """Register bytes for ``value``; ``signed`` uses the STS sign-magnitude bit (bit 15 / bit 7)."""
    value = int(value)
    sign_bit = 8 * size - 1
    if signed:
        magnitude = abs(value)
        if magnitude >= 1 << sign_bit:
            raise FeetechFrameError(f"value {value} does not fit a {size}-byte sign-magnitude register")
        raw = magnitude | ((1 << sign_bit) if value < 0 else 0)
    else:
        if not 0 <= value < 1 << (8 * size):
            raise FeetechFrameError(
                f"value {value} does not fit an unsigned {size}-byte register (0..{(1 << 8 * size) - 1})"
            )
        raw = value
    return raw.to_bytes(size, "little" if endian == "little" else "big")


def decode_value(data: bytes, *, endian: str = "little", signed: bool = False) -> int:
    raw = int.from_bytes(data, "little" if endian == "little" else "big")
    if signed:
        sign = 1 << (8 * len(data) - 1)
        return -(raw & (sign - 1)) if raw & sign else raw
    return raw


def describe_status_error(error: int) -> str:
    names = [name for bit, name in STATUS_ERRORS.items() if error & bit]
    return ", ".join(names) or f"unknown error bits 0x{error:02x}"
