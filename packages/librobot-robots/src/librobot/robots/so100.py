"""SO-100 arm: 5 revolute joints + a rotating-jaw gripper, six Feetech STS3215 servos on one bus.

Action: goal joint positions (rad). State: joint positions (rad) then joint velocities (rad/s).
Limits are the arm's mechanical ranges around the calibrated zero pose (arm straight up, jaw
closed); velocities are bounded by the STS3215's no-load speed (~0.16 s/60° at 7.4 V ≈ 6.5 rad/s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from librobot.core.errors import ConfigError
from librobot.robots.base import Camera, Robot
from librobot.robots.spec import HOLD, RobotSpec, dims_to_space

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
# (low, high) in rad
JOINT_LIMITS = {
    "shoulder_pan": (-1.92, 1.92),  # ±110°
    "shoulder_lift": (-1.75, 1.75),  # ±100°
    "elbow_flex": (-1.69, 1.69),  # ±97°
    "wrist_flex": (-1.66, 1.66),  # ±95°
    "wrist_roll": (-2.74, 2.84),  # -157°..163°
    "gripper": (-0.17, 1.75),  # jaw: slightly past closed .. ~100° open
}
MAX_JOINT_SPEED = 6.5  # rad/s
COMMAND_RATE = 3.0  # rad/s: how fast the safety layer lets a goal move (half the servo's top speed)
CONTROL_HZ = 30.0


def so100_spec(control_hz: float = CONTROL_HZ) -> RobotSpec:
    action = [(j, *JOINT_LIMITS[j], "rad") for j in JOINTS]
    positions = [(f"{j}.pos", *JOINT_LIMITS[j], "rad") for j in JOINTS]
    state = positions + [(f"{j}.vel", -MAX_JOINT_SPEED, MAX_JOINT_SPEED, "rad/s") for j in JOINTS]
    return RobotSpec(
        name="so100_arm",
        action_space=dims_to_space(action),
        state_space=dims_to_space(state),
        control_hz=control_hz,
        max_rate=[COMMAND_RATE] * 5 + [4.0],
        safe_action=[HOLD] * 6,  # position control: holding the last goal is the safe state
        description="SO-100 5-DoF arm + gripper on Feetech STS3215 servos",
    )


@dataclass(frozen=True)
class JointCalibration:
    """Servo ``servo_id`` reads ``zero_tick`` at joint angle 0; ``direction`` maps tick sign to angle sign."""

    servo_id: int
    zero_tick: int = 2048
    direction: int = 1

    def to_rad(self, ticks: float) -> float:
        return self.direction * (ticks - self.zero_tick) * 2 * math.pi / 4096

    def to_ticks(self, rad: float) -> int:
        return round(self.zero_tick + self.direction * rad * 4096 / (2 * math.pi))


def default_calibration(ids: Sequence[int] = (1, 2, 3, 4, 5, 6)) -> dict[str, JointCalibration]:
    if len(ids) != len(JOINTS):
        raise ConfigError(f"SO-100 needs {len(JOINTS)} servo ids ({', '.join(JOINTS)}), got {list(ids)}")
    return {j: JointCalibration(i) for j, i in zip(JOINTS, ids)}


class FeetechArmBackend:
    """SO-100 over a Feetech bus: one SYNC_READ of position+speed per observation, one SYNC_WRITE per command."""

    def __init__(
        self,
        port: Any,
        calibration: Mapping[str, JointCalibration] | None = None,
        *,
        baudrate: int = 1_000_000,
        timeout: float = 0.05,
        disable_torque_on_disconnect: bool = True,
    ) -> None:
        from librobot.robots.drivers.feetech import FeetechBus

        self.calibration = dict(calibration or default_calibration())
        missing = [j for j in JOINTS if j not in self.calibration]
        if missing:
            raise ConfigError(f"SO-100 calibration lacks joints {missing}")
        self.bus = FeetechBus(port, baudrate=baudrate, timeout=timeout)
        self.ids = [self.calibration[j].servo_id for j in JOINTS]
        self.disable_torque_on_disconnect = disable_torque_on_disconnect

    def connect(self) -> None:
        self.bus.open()
        absent = [i for i in self.ids if not self.bus.ping(i)]
        if absent:
            self.bus.close()
            raise ConfigError(f"SO-100: servos {absent} do not answer on {self.bus.port}; check power, wiring and ids")
        # Start from where the arm is, so enabling torque does not make it jump.
        present = self.bus.read_positions(self.ids)
        self.bus.write_positions({i: min(4095, max(0, present[i])) for i in self.ids})
        self.bus.set_torque(self.ids, True)

    def disconnect(self) -> None:
        try:
            if self.disable_torque_on_disconnect:
                self.bus.set_torque(self.ids, False)
        finally:
            self.bus.close()

    def read_state(self) -> np.ndarray:
        from librobot.robots.drivers.feetech_protocol import Register, decode_value

        raw = self.bus.sync_read(Register("present_position_speed", 56, 4), self.ids)
        pos, vel = [], []
        for j in JOINTS:
            cal = self.calibration[j]
            data = raw[cal.servo_id]
            pos.append(cal.to_rad(decode_value(data[:2], endian=self.bus.endian, signed=True)))
            vel.append(cal.direction * decode_value(data[2:], endian=self.bus.endian, signed=True) * 2 * math.pi / 4096)
        return np.array(pos + vel)

    def write_action(self, action: np.ndarray) -> None:
        self.bus.write_positions(
            {self.calibration[j].servo_id: self.calibration[j].to_ticks(float(a)) for j, a in zip(JOINTS, action)}
        )


class SO100Arm(Robot):
    """SO-100; pass ``port`` (e.g. ``/dev/ttyACM0``) to drive the real arm, nothing for the definition only."""

    def __init__(
        self,
        port: str | None = None,
        *,
        calibration: Mapping[str, JointCalibration] | None = None,
        cameras: Mapping[str, Camera] | None = None,
        control_hz: float = CONTROL_HZ,
        baudrate: int = 1_000_000,
        timeout: float = 0.05,
    ) -> None:
        backend = FeetechArmBackend(port, calibration, baudrate=baudrate, timeout=timeout) if port is not None else None
        super().__init__(so100_spec(control_hz), backend=backend, cameras=cameras)
