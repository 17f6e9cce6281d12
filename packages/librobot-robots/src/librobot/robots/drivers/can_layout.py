"""Wheel-loader CAN message layout (pure encode/decode; no bus). Documented in docs/can_protocol.md.

Every frame is a classic CAN frame with an 11-bit id and 8 data bytes::

    bytes 0-5  signals (little-endian integers, scaled as in MESSAGES)
    byte  6    high nibble: layout version (1); low nibble: rolling counter 0..14
    byte  7    CRC-8/SAE-J1850 over the two id bytes (big-endian) and bytes 0-6

The counter and CRC protect the commands end to end: a receiver drops a frame whose CRC fails, whose
DLC is not 8, whose version differs, or whose counter repeats the previous one (a stuck sender).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from librobot.core.errors import LibroBotError

VERSION = 1
COUNTER_MODULO = 15  # counters run 0..14; 15 is reserved as "invalid"


class CanFrameError(LibroBotError, ValueError):
    """A CAN frame is malformed (DLC, CRC, version, counter) or a value cannot be encoded."""


@dataclass(frozen=True)
class Signal:
    name: str
    size: int  # bytes
    signed: bool
    scale: float  # physical value per bit
    unit: str


@dataclass(frozen=True)
class Message:
    name: str
    can_id: int
    direction: str  # "command" (host → machine) or "telemetry" (machine → host)
    signals: tuple[Signal, ...]

    def __post_init__(self) -> None:
        if sum(s.size for s in self.signals) > 6:
            raise ValueError(f"{self.name}: signals take more than the 6 payload bytes")


def _s(name: str, size: int, signed: bool, scale: float, unit: str) -> Signal:
    return Signal(name, size, signed, scale, unit)


ESTOP_MAGIC = 0xA5  # a single set bit could come from a stuck line; 0xA5 cannot
MESSAGES: tuple[Message, ...] = (
    Message("ESTOP", 0x010, "command", (_s("stop", 1, False, 1.0, "0xA5=stop"),)),
    Message(
        "CMD_DRIVE",
        0x100,
        "command",
        (
            _s("throttle", 2, False, 1 / 50000, "fraction"),
            _s("steering", 2, True, 1e-4, "rad"),
            _s("brake", 2, False, 1 / 50000, "fraction"),
        ),
    ),
    Message(
        "CMD_IMPLEMENT",
        0x101,
        "command",
        (
            _s("boom", 2, True, 1 / 30000, "fraction"),
            _s("bucket", 2, True, 1 / 30000, "fraction"),
            _s("gear", 1, True, 1.0, "-1/0/1"),
        ),
    ),
    Message("TEL_POSITION_XY", 0x180, "telemetry", (_s("x", 3, True, 1e-3, "m"), _s("y", 3, True, 1e-3, "m"))),
    Message(
        "TEL_ATTITUDE",
        0x181,
        "telemetry",
        (_s("roll", 2, True, 1e-4, "rad"), _s("pitch", 2, True, 1e-4, "rad"), _s("yaw", 2, True, 1e-4, "rad")),
    ),
    Message(
        "TEL_VEL_LINEAR",
        0x182,
        "telemetry",
        (_s("vx", 2, True, 1e-3, "m/s"), _s("vy", 2, True, 1e-3, "m/s"), _s("vz", 2, True, 1e-3, "m/s")),
    ),
    Message(
        "TEL_VEL_ANGULAR",
        0x183,
        "telemetry",
        (
            _s("roll_rate", 2, True, 1e-3, "rad/s"),
            _s("pitch_rate", 2, True, 1e-3, "rad/s"),
            _s("yaw_rate", 2, True, 1e-3, "rad/s"),
        ),
    ),
    Message(
        "TEL_JOINT_POS",
        0x184,
        "telemetry",
        (
            _s("articulation", 2, True, 1e-4, "rad"),
            _s("boom_angle", 2, True, 1e-4, "rad"),
            _s("bucket_angle", 2, True, 1e-4, "rad"),
        ),
    ),
    Message(
        "TEL_JOINT_VEL",
        0x185,
        "telemetry",
        (
            _s("articulation_rate", 2, True, 1e-3, "rad/s"),
            _s("boom_rate", 2, True, 1e-3, "rad/s"),
            _s("bucket_rate", 2, True, 1e-3, "rad/s"),
        ),
    ),
    Message(
        "TEL_ENGINE",
        0x186,
        "telemetry",
        (
            _s("engine_rpm", 2, False, 0.125, "rpm"),
            _s("engine_load", 1, False, 1 / 250, "fraction"),
            _s("hydraulic_pressure", 2, False, 0.1, "bar"),
            _s("fuel_rate", 1, False, 0.5, "L/h"),
        ),
    ),
    Message(
        "TEL_STATUS",
        0x187,
        "telemetry",
        (
            _s("z", 3, True, 1e-3, "m"),
            _s("gear_engaged", 1, True, 1.0, "-1/0/1"),
            _s("safe_state", 1, False, 1.0, "0=run 1=watchdog 2=estop"),
            _s("rejected_frames", 1, False, 1.0, "count mod 256"),
        ),
    ),
)
BY_NAME: Mapping[str, Message] = {m.name: m for m in MESSAGES}
BY_ID: Mapping[int, Message] = {m.can_id: m for m in MESSAGES}
TELEMETRY = tuple(m for m in MESSAGES if m.direction == "telemetry")


def crc8(data: bytes | bytearray) -> int:
    """CRC-8/SAE-J1850: poly 0x1D, init 0xFF, final xor 0xFF."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1D) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ 0xFF


def _protect(can_id: int, payload: bytes, counter: int) -> bytes:
    body = payload.ljust(6, b"\x00") + bytes(((VERSION << 4) | (counter % COUNTER_MODULO),))
    return body + bytes((crc8(can_id.to_bytes(2, "big") + body),))


def encode(name: str, values: Mapping[str, float], counter: int) -> tuple[int, bytes]:
    """(can_id, 8 data bytes) for message ``name``; every signal must be given, finite and in range."""
    msg = BY_NAME.get(name)
    if msg is None:
        raise CanFrameError(f"unknown CAN message '{name}'; known: {', '.join(BY_NAME)}")
    missing = [s.name for s in msg.signals if s.name not in values]
    if missing:
        raise CanFrameError(f"{name}: missing signals {missing}")
    payload = bytearray()
    for sig in msg.signals:
        value = float(values[sig.name])
        if not math.isfinite(value):
            raise CanFrameError(f"{name}.{sig.name} is {value}; only finite values can be sent")
        raw = round(value / sig.scale)
        lo, hi = (
            (-(1 << (8 * sig.size - 1)), (1 << (8 * sig.size - 1)) - 1)
            if sig.signed
            else (0, (1 << (8 * sig.size)) - 1)
        )
        if not lo <= raw <= hi:
            raise CanFrameError(
                f"{name}.{sig.name}={value:g} {sig.unit} does not fit its {8 * sig.size}-bit field "
                f"([{lo * sig.scale:g}, {hi * sig.scale:g}] {sig.unit})"
            )
        payload += int(raw).to_bytes(sig.size, "little", signed=sig.signed)
    return msg.can_id, _protect(msg.can_id, bytes(payload), counter)


def decode(
    can_id: int, data: bytes | bytearray, *, previous_counter: int | None = None
) -> tuple[str, dict[str, float], int]:
    """(message name, physical values, counter); raises CanFrameError saying what is wrong."""
    msg = BY_ID.get(can_id)
    if msg is None:
        raise CanFrameError(f"CAN id 0x{can_id:03x} is not part of the wheel-loader layout")
    data = bytes(data)
    if len(data) != 8:
        raise CanFrameError(
            f"{msg.name} (0x{can_id:03x}): truncated frame, DLC {len(data)} instead of 8 ({data.hex(' ')})"
        )
    want = crc8(can_id.to_bytes(2, "big") + data[:7])
    if data[7] != want:
        raise CanFrameError(
            f"{msg.name} (0x{can_id:03x}): CRC mismatch, got 0x{data[7]:02x}, expected 0x{want:02x} ({data.hex(' ')})"
        )
    version, counter = data[6] >> 4, data[6] & 0x0F
    if version != VERSION:
        raise CanFrameError(
            f"{msg.name} (0x{can_id:03x}): layout version {version}, this driver speaks version {VERSION}"
        )
    if counter >= COUNTER_MODULO:
        raise CanFrameError(f"{msg.name} (0x{can_id:03x}): invalid counter value {counter}")
    if previous_counter is not None and counter == previous_counter:
        raise CanFrameError(
            f"{msg.name} (0x{can_id:03x}): counter {counter} repeated; the sender is stuck or the frame was replayed"
        )
    values, offset = {}, 0
    for sig in msg.signals:
        raw = int.from_bytes(data[offset : offset + sig.size], "little", signed=sig.signed)
        values[sig.name] = raw * sig.scale
        offset += sig.size
    return msg.name, values, counter


# The 22-D state vector, in order, and which telemetry signal fills each entry.
STATE_SIGNALS: Sequence[str] = (
    "x",
    "y",
    "z",
    "roll",
    "pitch",
    "yaw",
    "vx",
    "vy",
    "vz",
    "roll_rate",
    "pitch_rate",
    "yaw_rate",
    "articulation",
    "boom_angle",
    "bucket_angle",
    "articulation_rate",
    "boom_rate",
    "bucket_rate",
    "engine_rpm",
    "engine_load",
    "hydraulic_pressure",
    "fuel_rate",
)
ACTION_SIGNALS: Sequence[str] = ("throttle", "steering", "boom", "bucket", "brake", "gear")
