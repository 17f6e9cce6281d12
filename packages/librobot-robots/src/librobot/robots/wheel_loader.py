"""Wheel loader (articulated-steering, ~20 t class): 6-D command, 22-D state, CAN bus.

Action: throttle (accelerator pedal, 0..1), steering (articulation angle target, rad), boom and
bucket (hydraulic valve commands, -1..1; + raises / curls back), brake (0..1), gear (-1 reverse,
0 neutral, 1 forward; the machine engages the nearest). State: position (x, y, z), orientation
(roll, pitch, yaw), body velocities (linear, angular), joint states (articulation, boom, bucket
angles and rates) and engine metrics (rpm, load, hydraulic pressure, fuel rate).
The safe state: throttle 0, full brake, valves closed, neutral, steering held.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from librobot.robots.base import Camera, Robot, RobotBackend
from librobot.robots.drivers.can_layout import ACTION_SIGNALS, STATE_SIGNALS
from librobot.robots.spec import HOLD, RobotSpec, dims_to_space

MAX_ARTICULATION = 0.70  # rad, ±40°
BOOM_RANGE = (-0.75, 0.85)  # rad, lift-arm angle to horizontal (bucket on the ground .. full lift)
BUCKET_RANGE = (-1.0, 0.8)  # rad, bucket floor pitch (the Z-bar linkage holds it while lifting): dumped .. curled back
MAX_SPEED = 11.0  # m/s (≈ 40 km/h, top gear)
CONTROL_HZ = 20.0

ACTION_DIMS = [
    ("throttle", 0.0, 1.0, "fraction", 2.0, 0.0),
    ("steering", -MAX_ARTICULATION, MAX_ARTICULATION, "rad", 0.35, HOLD),  # ~4 s lock to lock
    ("boom", -1.0, 1.0, "fraction", 4.0, 0.0),
    ("bucket", -1.0, 1.0, "fraction", 4.0, 0.0),
    ("brake", 0.0, 1.0, "fraction", 10.0, 1.0),
    ("gear", -1.0, 1.0, "-1/0/1", 4.0, 0.0),  # passes through neutral: no direct forward↔reverse shift
]
STATE_DIMS = [
    ("x", -8000.0, 8000.0, "m"),
    ("y", -8000.0, 8000.0, "m"),
    ("z", -100.0, 100.0, "m"),
    ("roll", -math.pi / 2, math.pi / 2, "rad"),
    ("pitch", -math.pi / 2, math.pi / 2, "rad"),
    ("yaw", -math.pi, math.pi, "rad"),
    ("vx", -MAX_SPEED, MAX_SPEED, "m/s"),
    ("vy", -5.0, 5.0, "m/s"),
    ("vz", -5.0, 5.0, "m/s"),
    ("roll_rate", -3.0, 3.0, "rad/s"),
    ("pitch_rate", -3.0, 3.0, "rad/s"),
    ("yaw_rate", -3.0, 3.0, "rad/s"),
    ("articulation", -MAX_ARTICULATION, MAX_ARTICULATION, "rad"),
    ("boom_angle", *BOOM_RANGE, "rad"),
    ("bucket_angle", *BUCKET_RANGE, "rad"),
    ("articulation_rate", -1.0, 1.0, "rad/s"),
    ("boom_rate", -1.0, 1.0, "rad/s"),
    ("bucket_rate", -2.0, 2.0, "rad/s"),
    ("engine_rpm", 0.0, 2400.0, "rpm"),
    ("engine_load", 0.0, 1.0, "fraction"),
    ("hydraulic_pressure", 0.0, 350.0, "bar"),
    ("fuel_rate", 0.0, 80.0, "L/h"),
]
assert tuple(d[0] for d in ACTION_DIMS) == tuple(ACTION_SIGNALS)
assert tuple(d[0] for d in STATE_DIMS) == tuple(STATE_SIGNALS)


def wheel_loader_spec(control_hz: float = CONTROL_HZ) -> RobotSpec:
    return RobotSpec(
        name="wheel_loader",
        action_space=dims_to_space([d[:4] for d in ACTION_DIMS]),
        state_space=dims_to_space(STATE_DIMS),
        control_hz=control_hz,
        max_rate=[d[4] for d in ACTION_DIMS],
        safe_action=[d[5] for d in ACTION_DIMS],
        description="articulated wheel loader: throttle, steering, boom, bucket, brake, gear over CAN",
    )


class WheelLoader(Robot):
    """The wheel loader; pass ``channel`` (and ``interface``, default socketcan) to drive it over CAN."""

    def __init__(
        self,
        channel: str | None = None,
        *,
        interface: str = "socketcan",
        bus: Any = None,
        cameras: Mapping[str, Camera] | None = None,
        control_hz: float = CONTROL_HZ,
        backend: RobotBackend | None = None,
        telemetry_timeout: float = 0.25,
    ) -> None:
        if backend is None and (channel is not None or bus is not None):
            from librobot.robots.drivers.wheel_loader_can import WheelLoaderCanBackend

            backend = WheelLoaderCanBackend(
                channel=channel, interface=interface, bus=bus, telemetry_timeout=telemetry_timeout
            )
        super().__init__(wheel_loader_spec(control_hz), backend=backend, cameras=cameras)

    def emergency_stop(self, active: bool = True) -> bool:
        """Send the machine's own e-stop (the CAN ESTOP frame, latched on the machine until released).

        Returns False when the backend has no hardware e-stop (the safe command is still sent by
        the safety layer)."""
        self._require_connected("emergency_stop()")
        estop = getattr(self.backend, "estop", None)
        if estop is None:
            return False
        estop(active)
        return True
