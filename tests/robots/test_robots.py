"""Robot definitions: spaces, limits, normalisation, the registry, and custom robots from YAML."""

from __future__ import annotations

import numpy as np
import pytest

from librobot.core.errors import ConfigError, SpecError, UnknownComponentError
from librobot.robots import HOLD, Humanoid, RobotSpec, SO100Arm, WheelLoader, create_robot, list_robots


def test_registry_names_and_aliases():
    assert set(list_robots()) >= {"so100_arm", "humanoid", "wheel_loader"}
    assert isinstance(create_robot("so100"), SO100Arm)
    assert isinstance(create_robot("SO-100"), SO100Arm)
    assert isinstance(create_robot("loader"), WheelLoader)
    assert isinstance(create_robot("humanoid"), Humanoid)
    with pytest.raises(UnknownComponentError, match="Did you mean: wheel_loader"):
        create_robot("wheel_loadr")
    with pytest.raises(ConfigError, match="It accepts: port"):
        create_robot("so100", prot="/dev/ttyUSB0")


def test_so100_definition():
    arm = create_robot("so100")
    spec = arm.spec
    assert spec.action_space.names == (
        "shoulder_pan",
        "shoulder_lift",
        "elbow_flex",
        "wrist_flex",
        "wrist_roll",
        "gripper",
    )
    assert spec.state_dim == 12 and spec.state_space.names[6] == "shoulder_pan.vel"
    assert spec.action_space.units == ("rad",) * 6 and spec.control_hz == 30
    assert spec.action_space.low[0] == pytest.approx(-1.92) and spec.action_space.high[4] == pytest.approx(2.84)
    assert spec.safe_action == (HOLD,) * 6
    np.testing.assert_allclose(spec.max_delta, [0.1] * 5 + [4.0 / 30])


def test_wheel_loader_definition_matches_the_seed():
    spec = create_robot("wheel_loader").spec
    assert spec.action_space.names == ("throttle", "steering", "boom", "bucket", "brake", "gear")
    assert spec.state_dim == 22
    names = spec.state_space.names
    assert names[:6] == ("x", "y", "z", "roll", "pitch", "yaw")
    assert names[12:15] == ("articulation", "boom_angle", "bucket_angle")
    assert names[18:] == ("engine_rpm", "engine_load", "hydraulic_pressure", "fuel_rate")
    safe = spec.safe_command(np.array([0.9, 0.3, 1.0, -1.0, 0.0, 1.0]))
    np.testing.assert_allclose(safe, [0.0, 0.3, 0.0, 0.0, 1.0, 0.0])  # throttle off, steering held, brake on


def test_humanoid_is_configurable():
    h = create_robot("humanoid")
    assert h.spec.action_dim == 23 and h.spec.state_dim == 23 * 2 + 6
    assert h.spec.action_space.names[0] == "left_hip_pitch"
    i = h.spec.action_space.index("right_hip_roll")
    assert (h.spec.action_space.low[i], h.spec.action_space.high[i]) == (-2.53, 0.26)  # mirrored
    assert create_robot("humanoid", preset="g1-29").spec.action_dim == 29
    small = Humanoid(joints=[("a", -1, 1), ("b", -2, 2)], include_velocities=False, include_imu=False)
    assert small.spec.state_space.names == ("a.pos", "b.pos")
    with pytest.raises(ConfigError, match="g1-23"):
        Humanoid(preset="atlas")


def test_normalisation_round_trips_to_minus_one_one():
    spec = create_robot("wheel_loader").spec
    rng = np.random.default_rng(0)
    x = rng.uniform(spec.action_space.low_array, spec.action_space.high_array, size=(100, 6))
    y = spec.normalize_action(x)
    assert y.min() >= -1 and y.max() <= 1
    np.testing.assert_allclose(spec.denormalize_action(y), x, atol=1e-12)
    np.testing.assert_allclose(spec.normalize_action(spec.action_space.high_array), np.ones(6))
    s = rng.uniform(spec.state_space.low_array, spec.state_space.high_array, size=(10, 22))
    np.testing.assert_allclose(spec.denormalize_state(spec.normalize_state(s)), s, atol=1e-9)


def test_features_follow_the_batch_contract():
    feats = create_robot("so100").spec.features()
    assert feats["observation.state"].shape == (12,) and feats["action"].names[5] == "gripper"
    assert feats["action"].low[0] == pytest.approx(-1.92)


YAML = """
name: my_gantry
control_hz: 50
description: a two-axis gantry
action:
  - {name: x, low: 0.0, high: 0.8, unit: m, max_rate: 0.5, safe: hold}
  - {name: z, low: -0.1, high: 0.3, unit: m, max_rate: 0.2, safe: 0.3}
state:
  - {name: x_pos, low: 0.0, high: 0.8, unit: m}
  - {name: z_pos, low: -0.1, high: 0.3, unit: m}
cameras:
  - {name: top, height: 64, width: 80}
"""


def test_custom_robot_from_a_yaml_file_alone(tmp_path):
    path = tmp_path / "gantry.yaml"
    path.write_text(YAML)
    robot = create_robot(str(path))
    spec = robot.spec
    assert spec.name == "my_gantry" and spec.control_hz == 50 and robot.cameras == ("top",)
    assert spec.action_space.units == ("m", "m") and spec.safe_action == (HOLD, 0.3)
    np.testing.assert_allclose(spec.max_delta, [0.01, 0.004])
    assert spec.features()["observation.images.top"].shape == (3, 64, 80)
    assert RobotSpec.from_dict(spec.to_dict()) == spec  # the dict form round-trips
    np.testing.assert_allclose(spec.safe_command(np.array([0.4, 0.0])), [0.4, 0.3])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("max_rate: 0.5, ", ""), r"missing \['max_rate'\]"),
        (("low: 0.0, high: 0.8, unit: m, max", "low: 0.9, high: 0.8, unit: m, max"), "need finite low < high"),
        (("safe: 0.3", "safe: 7"), "safe value of 'z' must be 'hold' or a number in"),
        (("control_hz: 50", "control_hz: 50\nspeed: 3"), r"unknown keys \['speed'\]"),
        (("unit: m, max_rate: 0.2", "units: m, max_rate: 0.2"), r"unknown keys \['units'\]"),
        (("control_hz: 50", "control_hz: -5"), "control_hz must be a positive number"),
    ],
)
def test_bad_yaml_robots_name_the_problem(tmp_path, edit, message):
    path = tmp_path / "bad.yaml"
    path.write_text(YAML.replace(*edit, 1))
    with pytest.raises(ConfigError, match=message) as info:
        create_robot(str(path))
    assert "bad.yaml" in str(info.value)


def test_missing_yaml_file_and_bad_states_from_a_driver(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        create_robot(str(tmp_path / "nope.yaml"))

    class NaNBackend:
        def connect(self): ...
        def disconnect(self): ...
        def read_state(self):
            return np.array([np.nan] + [0.0] * 21)

        def write_action(self, a): ...

    with create_robot("loader", backend=NaNBackend()) as robot:
        with pytest.raises(SpecError, match=r"non-finite state values for \['x'\]"):
            robot.get_observation()
        with pytest.raises(SpecError, match="shape"):
            robot.send_action([0.0, 0.0])
