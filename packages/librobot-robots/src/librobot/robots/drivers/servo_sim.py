"""A simulated Feetech servo bus on a pseudo-terminal: the bytes really cross a serial device.

``SimulatedServoBus`` opens a pty pair, hands the slave's path (``.port``) to the host driver and
answers on the master side from a thread, speaking the STS protocol: PING, READ, WRITE, SYNC_READ,
SYNC_WRITE, with a 256-byte control table per servo. Like a real servo it ignores packets whose
checksum is wrong. Faults can be injected into its next replies (bad checksum, truncated frame,
no reply, line noise) to test the host's error handling. ``advance(dt)`` moves each servo toward
its goal at its maximum speed, so positions change only when a test says so.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from collections import deque
from dataclasses import dataclass, field

from librobot.robots.drivers.feetech_protocol import (
    BROADCAST_ID,
    GOAL_POSITION,
    ID,
    MODEL_NUMBER,
    PRESENT_POSITION,
    PRESENT_SPEED,
    PRESENT_TEMPERATURE,
    PRESENT_VOLTAGE,
    STS3215_MODEL,
    TORQUE_ENABLE,
    Instruction,
    Packet,
    PacketReader,
    decode_value,
    encode_status,
    encode_value,
)

FAULTS = ("ok", "checksum", "truncate", "drop", "noise", "error_bit")  # "ok": leave this reply alone


@dataclass
class SimServo:
    servo_id: int
    table: bytearray = field(default_factory=lambda: bytearray(256))
    max_speed: float = 3400.0  # ticks/s, about the STS3215's no-load speed at 7.4 V

    def get(self, reg, signed: bool = False) -> int:
        return decode_value(bytes(self.table[reg.address : reg.address + reg.size]), signed=signed)

    def set(self, reg, value: int, signed: bool = False) -> None:
        self.table[reg.address : reg.address + reg.size] = encode_value(value, reg.size, signed=signed)


class SimulatedServoBus:
    """Servos ``ids`` behind a pty; use as a context manager or call ``start()``/``stop()``."""

    def __init__(self, ids=(1, 2, 3, 4, 5, 6), initial_positions: dict[int, int] | None = None) -> None:
        self.servos = {i: SimServo(i) for i in ids}
        for i, servo in self.servos.items():
            pos = (initial_positions or {}).get(i, 2048)
            servo.set(MODEL_NUMBER, STS3215_MODEL)
            servo.set(ID, i)
            servo.set(PRESENT_POSITION, pos)
            servo.set(GOAL_POSITION, pos)
            servo.set(PRESENT_VOLTAGE, 74)  # 0.1 V units
            servo.set(PRESENT_TEMPERATURE, 30)
        self.received: list[Packet] = []  # every well-formed instruction packet, in order
        self.rejected: list[str] = []  # why each malformed packet was ignored
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._seen = threading.Condition(self._lock)  # notified after each packet is handled
        self._master = self._slave = -1
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = -1, -1
        self.port = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SimulatedServoBus:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: binary frames pass untouched
        self.port = os.ttyname(self._slave)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="sim-servo-bus", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join()
            self._thread = None
        for fd in (self._master, self._slave, self._stop_r, self._stop_w):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = self._stop_r = self._stop_w = -1

    def __enter__(self) -> SimulatedServoBus:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls
    def inject(self, *faults: str) -> None:
        """Corrupt the next replies, one entry per reply: ok, checksum, truncate, drop, noise, error_bit."""
        for f in faults:
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}; one of {FAULTS}")
        with self._lock:
            self._faults.extend(faults)

    def send_raw(self, data: bytes) -> None:
        """Write arbitrary bytes toward the host (e.g. unsolicited noise)."""
        os.write(self._master, data)

    def advance(self, dt: float) -> None:
        """Move every torque-enabled servo toward its goal for ``dt`` seconds at full speed."""
        with self._lock:
            for s in self.servos.values():
                pos, goal = s.get(PRESENT_POSITION, signed=True), s.get(GOAL_POSITION)
                if not s.get(TORQUE_ENABLE):
                    s.set(PRESENT_SPEED, 0, signed=True)
                    continue
                step = max(-s.max_speed * dt, min(s.max_speed * dt, goal - pos))
                new = round(pos + step)
                s.set(PRESENT_POSITION, new, signed=True)
                s.set(PRESENT_SPEED, round((new - pos) / dt) if dt > 0 else 0, signed=True)

    def wait_received(self, count: int, timeout: float = 2.0) -> bool:
        """Block until ``count`` packets have been handled (a SYNC_WRITE has no reply to wait on)."""
        with self._seen:
            return self._seen.wait_for(lambda: len(self.received) >= count, timeout)

    def goal(self, servo_id: int) -> int:
        with self._lock:
            return self.servos[servo_id].get(GOAL_POSITION)

    def position(self, servo_id: int) -> int:
        with self._lock:
            return self.servos[servo_id].get(PRESENT_POSITION, signed=True)

    def instructions(self, kind: Instruction) -> list[Packet]:
        with self._lock:
            return [p for p in self.received if p.code == kind]

    # ------------------------------------------------------------------ protocol
    def _serve(self) -> None:
        reader = PacketReader()
        while True:
            ready, _, _ = select.select([self._master, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(self._master, 4096)
            except OSError:  # host side closed
                return
            n_errors = len(reader.errors)
            packets = reader.feed(data)
            with self._lock:  # record rejections before any reply, so a host round trip sees them
                self.rejected.extend(reader.errors[n_errors:])
            for packet in packets:
                with self._lock:
                    replies = self._handle(packet)
                    self.received.append(packet)
                    self._seen.notify_all()
                for reply in replies:
                    self._reply(reply)

    def _handle(self, p: Packet) -> list[bytes]:
        params = p.params
        if p.code == Instruction.SYNC_WRITE and p.servo_id == BROADCAST_ID:
            address, size = params[0], params[1]
            for k in range(2, len(params), size + 1):
                servo = self.servos.get(params[k])
                if servo is not None:
                    servo.table[address : address + size] = params[k + 1 : k + 1 + size]
            return []
        if p.code == Instruction.SYNC_READ and p.servo_id == BROADCAST_ID:
            address, size = params[0], params[1]
            return [
                encode_status(i, 0, bytes(self.servos[i].table[address : address + size]))
                for i in params[2:]
                if i in self.servos
            ]
        servo = self.servos.get(p.servo_id)
        if servo is None:
            return []  # nobody with this id on the bus: silence, like real hardware
        if p.code == Instruction.PING:
            return [encode_status(servo.servo_id)]
        if p.code == Instruction.READ:
            address, size = params[0], params[1]
            return [encode_status(servo.servo_id, 0, bytes(servo.table[address : address + size]))]
        if p.code == Instruction.WRITE:
            address = params[0]
            servo.table[address : address + len(params) - 1] = params[1:]
            return [encode_status(servo.servo_id)]
        return [encode_status(servo.servo_id, 0x40)]  # unknown instruction

    def _reply(self, frame: bytes) -> None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault == "drop":
            return
        if fault == "checksum":
            frame = frame[:-1] + bytes(((frame[-1] + 1) & 0xFF,))
        elif fault == "truncate":
            frame = frame[: max(3, len(frame) - 3)]
        elif fault == "noise":
            frame = b"\x13\x37\xff" + frame
        elif fault == "error_bit":
            frame = encode_status(frame[2], 0x20, frame[5:-1])
        os.write(self._master, frame)
