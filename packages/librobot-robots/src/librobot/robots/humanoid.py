"""A configurable humanoid: position-controlled joints plus an IMU.

The default joint table is a 23-DoF full-size humanoid (legs 2×6, waist 1, arms 2×5) with the
joint ranges of the Unitree G1; ``preset="g1-29"`` adds waist roll/pitch and wrist pitch/yaw.
Pass ``joints=[(name, low, high), …]`` for any other body. Action: joint position targets (rad).
State: joint positions, then (optionally) joint velocities, then (optionally) IMU roll/pitch/yaw
and angular velocity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from librobot.core.errors import ConfigError
from librobot.robots.base import Camera, Robot, RobotBackend
from librobot.robots.spec import HOLD, RobotSpec, dims_to_space

_LEG = [
    ("hip_pitch", -2.35, 3.05),
    ("hip_roll", -0.26, 2.53),  # mirrored for the right leg
    ("hip_yaw", -2.75, 2.75),
    ("knee", -0.335, 2.545),
    ("ankle_pitch", -0.68, 0.73),
    ("ankle_roll", -0.2618, 0.2618),
]
_ARM = [
    ("shoulder_pitch", -2.9671, 2.7925),
    ("shoulder_roll", -1.5882, 2.2515),  # mirrored for the right arm
    ("shoulder_yaw", -2.618, 2.618),
    ("elbow", -0.2268, 3.4208),
    ("wrist_roll", -1.972, 1.972),
]
_MIRRORED = {"hip_roll", "shoulder_roll"}


def _side(side: str, table: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    out = []
    for name, lo, hi in table:
        if side == "right" and name in _MIRRORED:
            lo, hi = -hi, -lo
        out.append((f"{side}_{name}", lo, hi))
    return out


def preset_joints(preset: str = "g1-23") -> list[tuple[str, float, float]]:
    """Joint tables of the built-in presets: 'g1-23' (23 DoF) and 'g1-29' (29 DoF)."""
    legs = _side("left", _LEG) + _side("right", _LEG)
    if preset == "g1-23":
        return [*legs, ("waist_yaw", -2.618, 2.618), *_side("left", _ARM), *_side("right", _ARM)]
    if preset == "g1-29":
        waist = [("waist_yaw", -2.618, 2.618), ("waist_roll", -0.52, 0.52), ("waist_pitch", -0.52, 0.52)]
        wrist = [("wrist_pitch", -1.614, 1.614), ("wrist_yaw", -1.614, 1.614)]
        return legs + waist + _side("left", _ARM + wrist) + _side("right", _ARM + wrist)
    raise ConfigError(
        f"unknown humanoid preset '{preset}'; use 'g1-23' or 'g1-29', or pass joints=[(name, low, high), ...]"
    )


def humanoid_spec(
    joints: Sequence[tuple[str, float, float]] | None = None,
    *,
    preset: str = "g1-23",
    control_hz: float = 50.0,
    max_joint_speed: float = 20.0,
    command_rate: float = 4.0,
    include_velocities: bool = True,
    include_imu: bool = True,
    name: str = "humanoid",
) -> RobotSpec:
    table = list(joints) if joints is not None else preset_joints(preset)
    if not table:
        raise ConfigError("a humanoid needs at least one joint")
    for row in table:
        if len(row) != 3:
            raise ConfigError(f"each joint is (name, low, high) in rad; got {row!r}")
    action = [(n, float(lo), float(hi), "rad") for n, lo, hi in table]
    state = [(f"{n}.pos", float(lo), float(hi), "rad") for n, lo, hi in table]
    if include_velocities:
        state += [(f"{n}.vel", -max_joint_speed, max_joint_speed, "rad/s") for n, _, _ in table]
    if include_imu:
        pi = 3.141592653589793
        state += [("imu.roll", -pi, pi, "rad"), ("imu.pitch", -pi, pi, "rad"), ("imu.yaw", -pi, pi, "rad")]
        state += [(f"imu.gyro_{a}", -35.0, 35.0, "rad/s") for a in "xyz"]  # ±2000 °/s gyro range
    return RobotSpec(
        name=name,
        action_space=dims_to_space(action),
        state_space=dims_to_space(state),
        control_hz=control_hz,
        max_rate=[command_rate] * len(action),
        safe_action=[HOLD] * len(action),
        description=f"humanoid with {len(action)} position-controlled joints",
    )


class Humanoid(Robot):
    """A humanoid (23 joints by default). No hardware driver ships for a specific humanoid: pass
    ``backend=`` (anything with connect/disconnect/read_state/write_action) to drive one."""

    def __init__(
        self,
        joints: Sequence[tuple[str, float, float]] | None = None,
        *,
        preset: str = "g1-23",
        control_hz: float = 50.0,
        include_velocities: bool = True,
        include_imu: bool = True,
        backend: RobotBackend | None = None,
        cameras: Mapping[str, Camera] | None = None,
        **spec_kwargs: Any,
    ) -> None:
        spec = humanoid_spec(
            joints,
            preset=preset,
            control_hz=control_hz,
            include_velocities=include_velocities,
            include_imu=include_imu,
            **spec_kwargs,
        )
        super().__init__(spec, backend=backend, cameras=cameras)
