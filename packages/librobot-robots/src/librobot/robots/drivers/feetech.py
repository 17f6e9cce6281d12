"""Feetech STS/SCS servo bus over a serial port (pyserial): ping, read, write, sync-read/write.

Every request is validated before a byte is written (ids, addresses, value ranges), so a bad
command raises and nothing reaches the bus. Every reply is checked (header, length, checksum,
servo id, error bits); a corrupted or truncated reply raises a ``FeetechError`` that says which
servo and what was wrong, and the input buffer is flushed before the next transaction so one bad
frame cannot shift the ones after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from librobot.core.extras import require
from librobot.robots.drivers.feetech_protocol import (
    BROADCAST_ID,
    GOAL_POSITION,
    HEADER,
    MAX_ID,
    MODEL_NUMBER,
    PRESENT_POSITION,
    TORQUE_ENABLE,
    FeetechError,
    FeetechFrameError,
    FeetechStatusError,
    FeetechTimeoutError,
    Instruction,
    Packet,
    Register,
    decode_packet,
    decode_value,
    describe_status_error,
    encode_instruction,
    encode_value,
)


class FeetechBus:
    """One half-duplex serial bus of Feetech servos.

    ``port`` is a device path (``/dev/ttyUSB0``, a pty) or an already open serial-like object with
    ``write``, ``read``, ``flush``, ``reset_input_buffer`` and ``close``.
    """

    def __init__(self, port: Any, *, baudrate: int = 1_000_000, timeout: float = 0.05, endian: str = "little") -> None:
        if endian not in ("little", "big"):
            raise FeetechFrameError(f"endian must be 'little' (STS servos) or 'big' (SCS servos), got {endian!r}")
        self.port = port
        self.baudrate = int(baudrate)
        self.timeout = float(timeout)
        self.endian = endian
        self._serial: Any = None
        self.packets_sent = 0
        self._dirty = False  # a transaction failed: replies may still be in flight

    # ------------------------------------------------------------------ connection
    def open(self) -> None:
        if self._serial is not None:
            return
        if isinstance(self.port, str):
            serial = require("serial", extra="librobot-robots[so100]", purpose="talking to Feetech servos")
            try:
                self._serial = serial.Serial(
                    self.port, baudrate=self.baudrate, timeout=self.timeout, write_timeout=max(1.0, self.timeout)
                )
            except serial.SerialException as exc:
                raise FeetechTimeoutError(
                    f"cannot open serial port '{self.port}': {exc}. Check the cable and the port name"
                ) from exc
        else:
            self._serial = self.port

    def close(self) -> None:
        if self._serial is not None:
            if isinstance(self.port, str):
                self._serial.close()
            self._serial = None

    def __enter__(self) -> FeetechBus:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def _send(self, packet: bytes) -> None:
        if self._serial is None:
            raise FeetechFrameError("the bus is not open; call open() first")
        if self._dirty:  # wait for the bus to go quiet so a late reply is not taken for the next one
            old = self._serial.timeout
            self._serial.timeout = min(self.timeout, 0.02)
            while self._serial.read(256):
                pass
            self._serial.timeout = old
            self._dirty = False
        self._serial.reset_input_buffer()  # drop stale bytes from an earlier failed transaction
        try:
            self._serial.write(packet)
            self._serial.flush()
        except Exception as exc:  # pyserial's SerialTimeoutException / SerialException
            raise FeetechTimeoutError(
                f"writing to '{self.port}' failed: {exc}; is the adapter still connected?"
            ) from exc
        self.packets_sent += 1

    def _read_exact(self, n: int, servo_id: int, got: bytes = b"") -> bytes:
        data = bytearray(got)
        while len(data) < n:
            chunk = self._serial.read(n - len(data))
            if not chunk:
                what = (
                    "no reply"
                    if not data
                    else f"truncated reply: got {len(data)} of {n} bytes ({bytes(data).hex(' ')})"
                )
                raise FeetechTimeoutError(f"servo {servo_id}: {what} within {self.timeout:g} s")
            data += chunk
        return bytes(data)

    def _receive(self, servo_id: int, n_params: int) -> Packet:
        """Read one status packet from ``servo_id`` carrying ``n_params`` bytes."""
        try:
            return self._receive_packet(servo_id, n_params)
        except Exception:
            self._dirty = True
            raise

    def _receive_packet(self, servo_id: int, n_params: int) -> Packet:
        head = self._read_exact(4, servo_id)
        skipped = 0
        while head[:2] != HEADER or head[2] == 0xFF:  # resync over noise before the header
            skipped += 1
            if skipped > 64:
                raise FeetechFrameError(
                    f"servo {servo_id}: no packet header in the reply (line noise or wrong baud rate?)"
                )
            head = self._read_exact(4, servo_id, head[1:])
        length = head[3]
        if length != n_params + 2:
            rest = self._serial.read(max(0, length))  # consume what it claims, for the message
            raise FeetechFrameError(
                f"servo {servo_id}: reply has length byte {length}, expected {n_params + 2} "
                f"({(head + rest).hex(' ')}); is another device answering on this id?"
            )
        frame = self._read_exact(4 + length, servo_id, head)
        packet = decode_packet(frame)  # raises FeetechChecksumError on a bad checksum
        if packet.servo_id != servo_id:
            raise FeetechFrameError(f"expected a reply from servo {servo_id}, got one from servo {packet.servo_id}")
        if packet.code:
            raise FeetechStatusError(
                f"servo {servo_id} reports: {describe_status_error(packet.code)} (error byte 0x{packet.code:02x})"
            )
        return packet

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_id(servo_id: int) -> int:
        if not isinstance(servo_id, int) or not 0 <= servo_id <= MAX_ID:
            raise FeetechFrameError(f"servo id must be an int in 0..{MAX_ID}, got {servo_id!r}")
        return servo_id

    @staticmethod
    def _check_range(address: int, size: int) -> None:
        if not (0 <= address <= 255 and 1 <= size <= 255 and address + size <= 256):
            raise FeetechFrameError(f"register range {address}+{size} is outside the 256-byte control table")

    # ------------------------------------------------------------------ instructions
    def ping(self, servo_id: int) -> bool:
        """True when ``servo_id`` answers a PING."""
        self._send(encode_instruction(self._check_id(servo_id), Instruction.PING))
        try:
            self._receive(servo_id, 0)
        except FeetechTimeoutError:
            return False
        return True

    def read(self, servo_id: int, register: Register | int, size: int | None = None) -> bytes:
        address, size = (
            (register.address, register.size) if isinstance(register, Register) else (int(register), int(size or 1))
        )
        self._check_range(address, size)
        self._send(encode_instruction(self._check_id(servo_id), Instruction.READ, bytes((address, size))))
        return self._receive(servo_id, size).params

    def read_value(self, servo_id: int, register: Register, *, signed: bool = False) -> int:
        return decode_value(self.read(servo_id, register), endian=self.endian, signed=signed)

    def write(self, servo_id: int, register: Register | int, data: bytes) -> None:
        """WRITE and wait for the servo's acknowledgement."""
        address = register.address if isinstance(register, Register) else int(register)
        if isinstance(register, Register) and len(data) != register.size:
            raise FeetechFrameError(f"{register.name} takes {register.size} bytes, got {len(data)}")
        self._check_range(address, len(data))
        self._send(encode_instruction(self._check_id(servo_id), Instruction.WRITE, bytes((address,)) + bytes(data)))
        self._receive(servo_id, 0)

    def write_value(self, servo_id: int, register: Register, value: int, *, signed: bool = False) -> None:
        self.write(servo_id, register, encode_value(value, register.size, endian=self.endian, signed=signed))

    def sync_write(self, register: Register, values: Mapping[int, bytes]) -> None:
        """One broadcast packet writing ``register`` on several servos (no reply, by protocol)."""
        if not values:
            raise FeetechFrameError("sync_write needs at least one servo")
        params = bytearray((register.address, register.size))
        for servo_id, data in values.items():
            if len(data) != register.size:
                raise FeetechFrameError(
                    f"sync_write {register.name}: servo {servo_id} got {len(data)} bytes, expected {register.size}"
                )
            params += bytes((self._check_id(servo_id),)) + bytes(data)
        self._send(encode_instruction(BROADCAST_ID, Instruction.SYNC_WRITE, bytes(params)))

    def sync_read(self, register: Register, ids: Sequence[int]) -> dict[int, bytes]:
        """One broadcast request; each servo answers in the order of ``ids``."""
        ids = [self._check_id(i) for i in ids]
        if not ids or len(set(ids)) != len(ids):
            raise FeetechFrameError(f"sync_read needs distinct servo ids, got {list(ids)}")
        self._send(
            encode_instruction(BROADCAST_ID, Instruction.SYNC_READ, bytes((register.address, register.size, *ids)))
        )
        out: dict[int, bytes] = {}
        for k, i in enumerate(ids):
            try:
                out[i] = self._receive(i, register.size).params
            except FeetechError:
                for later in ids[k + 1 :]:  # the other servos still answer: consume their replies
                    try:
                        self._receive(later, register.size)
                    except FeetechError:
                        pass
                raise
        return out

    # ------------------------------------------------------------------ positions
    def read_positions(self, ids: Sequence[int]) -> dict[int, int]:
        raw = self.sync_read(PRESENT_POSITION, ids)
        return {i: decode_value(b, endian=self.endian, signed=True) for i, b in raw.items()}

    def write_positions(self, positions: Mapping[int, int]) -> None:
        """Goal positions in encoder ticks (0..4095), all servos in one SYNC_WRITE."""
        checked: dict[int, bytes] = {}
        for servo_id, ticks in positions.items():
            if isinstance(ticks, float) and ticks != ticks:
                raise FeetechFrameError(f"servo {servo_id}: goal position is NaN; nothing was sent")
            if not 0 <= int(ticks) <= 4095 or int(ticks) != ticks:
                raise FeetechFrameError(
                    f"servo {servo_id}: goal position must be an integer tick in 0..4095, got {ticks!r}; nothing was sent"
                )
            checked[servo_id] = encode_value(int(ticks), GOAL_POSITION.size, endian=self.endian)
        self.sync_write(GOAL_POSITION, checked)

    def set_torque(self, ids: Iterable[int], enabled: bool) -> None:
        self.sync_write(TORQUE_ENABLE, {i: bytes((1 if enabled else 0,)) for i in ids})

    def model_number(self, servo_id: int) -> int:
        return self.read_value(servo_id, MODEL_NUMBER)
