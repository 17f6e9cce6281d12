"""Wheel loader over CAN (python-can): the host driver and the machine-side node.

``WheelLoaderCanBackend`` (the robot computer) encodes 6-D commands as CMD_DRIVE + CMD_IMPLEMENT
frames and assembles the 22-D state from telemetry frames. ``WheelLoaderCanNode`` is the machine
side (the ECU of a real machine, or the simulator's stand-in): it checks every command frame
(DLC, CRC, version, counter), applies only valid ones, falls back to the safe state when valid
commands stop arriving, latches the CAN e-stop, and publishes telemetry. The frame layout is in
``can_layout`` and docs/can_protocol.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from librobot.core.errors import LibroBotError
from librobot.core.extras import require
from librobot.robots.drivers.can_layout import (
    ACTION_SIGNALS,
    BY_ID,
    ESTOP_MAGIC,
    STATE_SIGNALS,
    TELEMETRY,
    CanFrameError,
    decode,
    encode,
)

log = logging.getLogger("librobot.robots.can")


class CanTimeoutError(LibroBotError, TimeoutError):
    """Telemetry frames did not arrive (or stopped arriving) within the deadline."""


def _open_bus(channel: str | None, interface: str, **kwargs: Any) -> Any:
    can = require("can", extra="librobot-robots[can]", purpose="the wheel loader's CAN bus")
    try:
        return can.Bus(interface=interface, channel=channel, **kwargs)
    except (OSError, can.CanError) as exc:
        raise CanTimeoutError(
            f"cannot open CAN {interface} channel '{channel}': {exc}. Is the interface up (ip link set {channel} up)?"
        ) from exc


def _send(bus: Any, can_id: int, data: bytes) -> None:
    can = require("can", extra="librobot-robots[can]")
    bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))


class WheelLoaderCanBackend:
    """Host side. ``bus`` may be an open python-can bus; otherwise ``channel``/``interface`` open one."""

    def __init__(
        self,
        channel: str | None = None,
        *,
        interface: str = "socketcan",
        bus: Any = None,
        telemetry_timeout: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        **bus_kwargs: Any,
    ) -> None:
        self.channel, self.interface, self.bus_kwargs = channel, interface, bus_kwargs
        self.bus = bus
        self._own_bus = bus is None
        self.telemetry_timeout = float(telemetry_timeout)
        self.clock = clock
        self._counters: dict[str, int] = {}
        self._rx_counter: dict[int, int] = {}
        self.signals: dict[str, float] = {}
        self.received_at: dict[str, float] = {}  # message name → clock time of its last valid frame
        self.errors: list[str] = []  # one line per dropped frame
        self.frames_sent = 0

    def connect(self) -> None:
        if self.bus is None:
            self.bus = _open_bus(self.channel, self.interface, **self.bus_kwargs)

    def disconnect(self) -> None:
        if self.bus is not None and self._own_bus:
            self.bus.shutdown()
            self.bus = None

    def _next(self, name: str) -> int:
        self._counters[name] = (self._counters.get(name, -1) + 1) % 15
        return self._counters[name]

    def write_action(self, action: np.ndarray) -> None:
        a = dict(zip(ACTION_SIGNALS, (float(v) for v in np.asarray(action, dtype=np.float64))))
        if len(a) != len(ACTION_SIGNALS):
            raise CanFrameError(
                f"expected {len(ACTION_SIGNALS)} action values ({', '.join(ACTION_SIGNALS)}), got {len(a)}"
            )
        a["gear"] = float(np.clip(np.rint(a["gear"]), -1, 1)) if np.isfinite(a["gear"]) else a["gear"]
        # Encode both frames before sending either: a bad value sends nothing at all.
        c_drive, c_impl = self._counters.get("CMD_DRIVE", -1), self._counters.get("CMD_IMPLEMENT", -1)
        drive = encode("CMD_DRIVE", a, (c_drive + 1) % 15)
        implement = encode("CMD_IMPLEMENT", a, (c_impl + 1) % 15)
        self._next("CMD_DRIVE"), self._next("CMD_IMPLEMENT")
        for can_id, data in (drive, implement):
            _send(self.bus, can_id, data)
            self.frames_sent += 1

    def estop(self, active: bool = True) -> None:
        can_id, data = encode("ESTOP", {"stop": ESTOP_MAGIC if active else 0}, self._next("ESTOP"))
        _send(self.bus, can_id, data)
        self.frames_sent += 1

    def poll(self, timeout: float = 0.0) -> int:
        """Read every queued frame (waiting up to ``timeout`` for the first); returns frames accepted."""
        accepted = 0
        msg = self.bus.recv(timeout)
        while msg is not None:
            if msg.arbitration_id in BY_ID and BY_ID[msg.arbitration_id].direction == "telemetry":
                try:
                    name, values, counter = decode(
                        msg.arbitration_id, msg.data, previous_counter=self._rx_counter.get(msg.arbitration_id)
                    )
                except CanFrameError as exc:
                    self.errors.append(str(exc))
                    log.warning("dropped CAN frame: %s", exc)
                else:
                    self._rx_counter[msg.arbitration_id] = counter
                    self.signals.update(values)
                    self.received_at[name] = self.clock()
                    accepted += 1
            msg = self.bus.recv(0.0)
        return accepted

    def stale_messages(self) -> list[str]:
        now = self.clock()
        return [m.name for m in TELEMETRY if now - self.received_at.get(m.name, -np.inf) > self.telemetry_timeout]

    def read_state(self) -> np.ndarray:
        """The 22-D state from the freshest valid telemetry; CanTimeoutError if any part is missing or stale."""
        self.poll(0.0)
        if self.stale_messages():
            self.poll(self.telemetry_timeout)
        stale = self.stale_messages()
        if stale:
            raise CanTimeoutError(
                f"no valid telemetry within {self.telemetry_timeout:g} s for {', '.join(stale)}"
                + (f"; last dropped frame: {self.errors[-1]}" if self.errors else "")
            )
        return np.array([self.signals[s] for s in STATE_SIGNALS])

    @property
    def machine_status(self) -> int:
        """0 running, 1 machine watchdog safe state, 2 machine e-stop (from TEL_STATUS)."""
        return int(self.signals.get("safe_state", 0))


class WheelLoaderCanNode:
    """Machine side. ``apply(command)`` receives each valid command as a dict of the 6 action
    signals (the safe command when the watchdog or e-stop is active); ``telemetry()`` returns the
    22 state signals plus ``gear_engaged`` to publish."""

    SAFE = {"throttle": 0.0, "boom": 0.0, "bucket": 0.0, "brake": 1.0, "gear": 0.0}

    def __init__(
        self,
        bus: Any,
        apply: Callable[[dict[str, float]], None],
        telemetry: Callable[[], Mapping[str, float]],
        *,
        command_timeout: float = 0.15,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus, self.apply, self.telemetry = bus, apply, telemetry
        self.command_timeout = command_timeout
        self.clock = clock
        self.command: dict[str, float] = {"steering": 0.0, **self.SAFE}
        self._pending: dict[str, dict[str, float]] = {}
        self._rx_counter: dict[int, int] = {}
        self._last_valid: float | None = None
        self.estopped = False
        self.rejected: list[str] = []
        self.applied = 0
        self._tx_counter = -1

    @property
    def safe_state(self) -> int:
        if self.estopped:
            return 2
        if self._last_valid is None or self.clock() - self._last_valid > self.command_timeout:
            return 1
        return 0

    def process(self, timeout: float = 0.0) -> None:
        """Consume queued command frames, then apply the resulting command (or the safe one)."""
        msg = self.bus.recv(timeout)
        while msg is not None:
            self._handle(msg)
            msg = self.bus.recv(0.0)
        # A command takes effect only when both halves (drive + implement) arrived valid.
        if "CMD_DRIVE" in self._pending and "CMD_IMPLEMENT" in self._pending:
            self.command = {**self._pending.pop("CMD_DRIVE"), **self._pending.pop("CMD_IMPLEMENT")}
            self._last_valid = self.clock()
            self.applied += 1
        out = dict(self.command)
        if self.safe_state:
            out.update(self.SAFE)  # steering keeps its last valid target
        self.apply(out)

    def _handle(self, msg: Any) -> None:
        spec = BY_ID.get(msg.arbitration_id)
        if spec is None or spec.direction != "command":
            return
        try:
            name, values, counter = decode(
                msg.arbitration_id, msg.data, previous_counter=self._rx_counter.get(msg.arbitration_id)
            )
        except CanFrameError as exc:
            self.rejected.append(str(exc))
            log.warning("machine rejected CAN frame: %s", exc)
            return
        self._rx_counter[msg.arbitration_id] = counter
        if name == "ESTOP":
            if values["stop"] == ESTOP_MAGIC:
                self.estopped = True
            elif values["stop"] == 0:
                self.estopped = False
            return
        if name == "CMD_IMPLEMENT" and values["gear"] not in (-1.0, 0.0, 1.0):
            self.rejected.append(f"CMD_IMPLEMENT: gear {values['gear']:g} is not -1, 0 or 1")
            return
        self._pending[name] = values

    def publish(self) -> None:
        """Send one frame of every telemetry message."""
        values = dict(self.telemetry())
        values.setdefault("gear_engaged", self.command["gear"] if not self.safe_state else 0.0)
        values["safe_state"] = float(self.safe_state)
        values["rejected_frames"] = float(len(self.rejected) % 256)
        self._tx_counter = (self._tx_counter + 1) % 15
        for msg in TELEMETRY:
            _send(self.bus, *encode(msg.name, values, self._tx_counter))
