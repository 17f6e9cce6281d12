"""Safety layer: limits, rate bound, NaN/inf rejection, watchdog, e-stop latch, intervention log."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from librobot.core.errors import ConfigError, SpecError
from librobot.robots import ManualClock, SafeRobot, SafetyLayer, create_robot
from librobot.robots.humanoid import humanoid_spec
from librobot.robots.so100 import so100_spec
from librobot.robots.wheel_loader import wheel_loader_spec

SPECS = [so100_spec(), wheel_loader_spec(), humanoid_spec()]


def _adversarial(rng: np.random.Generator, spec, n: int) -> np.ndarray:
    """Random and hostile commands: in range, far out of range, huge, NaN, inf, sign flips."""
    lo, hi = spec.action_space.low_array, spec.action_space.high_array
    cmds = rng.uniform(lo, hi, size=(n, spec.action_dim))
    kind = rng.integers(0, 7, size=n)
    span = hi - lo
    cmds[kind == 1] = rng.uniform(lo - 10 * span, hi + 10 * span, size=((kind == 1).sum(), spec.action_dim))
    cmds[kind == 2] = rng.choice([-1e300, 1e300, -1e9, 1e9], size=((kind == 2).sum(), spec.action_dim))
    for k, bad in ((3, np.nan), (4, np.inf), (5, -np.inf)):
        rows = np.flatnonzero(kind == k)
        cols = rng.integers(0, spec.action_dim, size=rows.size)
        cmds[rows, cols] = bad
    flips = np.flatnonzero(kind == 6)  # bang-bang: the opposite limit every other step
    cmds[flips] = np.where(flips[:, None] % 2 == 0, lo, hi)
    return cmds


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_100k_random_and_adversarial_commands_stay_in_limits_and_rate_bound(spec, caplog):
    caplog.set_level(logging.ERROR, logger="librobot.robots.safety")  # trips are expected here; keep the log quiet
    rng = np.random.default_rng(0)
    clock = ManualClock()
    initial = 0.5 * (spec.action_space.low_array + spec.action_space.high_array)
    layer = SafetyLayer(spec, initial=initial, clock=clock)
    lo, hi, bound = spec.action_space.low_array, spec.action_space.high_array, spec.max_delta
    n = 100_000
    cmds = _adversarial(rng, spec, n)
    outs = np.empty((n + 1, spec.action_dim))
    outs[0] = layer.command
    tripped = np.zeros(n + 1, dtype=bool)
    for i in range(n):
        clock.advance(spec.period)
        outs[i + 1] = layer.filter(cmds[i]) if i % 97 else layer.tick()  # some ticks without a fresh command
        tripped[i + 1] = layer.tripped
    assert np.isfinite(outs).all()
    assert (outs >= lo).all() and (outs <= hi).all()
    steps = np.abs(np.diff(outs, axis=0))
    normal = ~tripped[1:]
    assert (steps[normal] <= bound + 1e-12).all(), steps[normal].max(axis=0) - bound
    # While tripped the output is exactly the safe command (switching to it is exempt from the rate bound).
    for i in np.flatnonzero(tripped[1:]):
        np.testing.assert_array_equal(outs[i + 1], spec.safe_command(outs[i]))
    safe_steps = int(tripped[1:].sum())
    counts = layer.counts
    assert counts["reject_nonfinite"] > 0.35 * n  # NaN/inf rows (3/7 of them) were rejected
    assert counts["clamp"] > 0.2 * n and counts["rate_limit"] > 0.5 * n
    # Runs of NaN/inf commands are not fresh: two in a row stall past 1.5 periods and trip the watchdog.
    assert counts["watchdog_trip"] > 1000 and counts["watchdog_clear"] >= counts["watchdog_trip"] - 1
    assert safe_steps >= counts["watchdog_trip"]


def test_nonfinite_command_holds_last_safe_command():
    spec = wheel_loader_spec()
    clock = ManualClock()
    layer = SafetyLayer(spec, initial=np.zeros(6), clock=clock)
    good = np.array([0.5, 0.1, 0.3, -0.2, 0.0, 1.0])
    for _ in range(100):  # ramp up to the good command
        clock.advance(spec.period)
        out = layer.filter(good)
    np.testing.assert_allclose(out, good)
    clock.advance(spec.period)
    held = layer.filter([np.nan, 0.0, 0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(held, good)
    last = layer.log[-1]
    assert last.kind == "reject_nonfinite" and last.dims == ("throttle",)


def test_watchdog_trips_within_two_periods_of_a_stall_and_recovers_ramped():
    spec = wheel_loader_spec()  # 20 Hz
    clock = ManualClock(100.0)
    layer = SafetyLayer(spec, initial=np.zeros(6), clock=clock)
    cmd = np.array([0.8, 0.2, 0.5, 0.5, 0.0, 1.0])
    for _ in range(60):
        clock.advance(spec.period)
        layer.filter(cmd)
    last_fresh = clock.now
    trip_time = None
    for _ in range(10):  # the policy stalls; the control loop keeps ticking
        clock.advance(spec.period)
        out = layer.tick()
        if layer.tripped:
            trip_time = clock.now
            break
    assert trip_time is not None and trip_time - last_fresh <= 2 * spec.period + 1e-9
    safe = spec.safe_command(cmd)
    np.testing.assert_allclose(out, safe)
    assert out[0] == 0.0 and out[4] == 1.0 and out[1] == pytest.approx(0.2)  # throttle off, brake on, steering held
    assert layer.log[-1].kind == "watchdog_trip"
    # A fresh command clears the trip, and the throttle ramps up at the rate limit from zero.
    clock.advance(spec.period)
    out = layer.filter(cmd)
    assert not layer.tripped and out[0] == pytest.approx(spec.max_delta[0])


def test_nan_stream_trips_the_watchdog():
    spec = wheel_loader_spec()
    clock = ManualClock()
    layer = SafetyLayer(spec, initial=np.zeros(6), clock=clock)
    clock.advance(spec.period)
    layer.filter([0.5, 0, 0, 0, 0, 1])
    for _ in range(3):
        clock.advance(spec.period)
        out = layer.filter([np.nan] * 6)
    assert layer.tripped and out[4] == 1.0


def test_estop_latches_until_explicit_reset():
    spec = so100_spec()
    clock = ManualClock()
    start = np.zeros(6)
    layer = SafetyLayer(spec, initial=start, clock=clock)
    target = np.full(6, 1.0)
    for _ in range(5):
        clock.advance(spec.period)
        out = layer.filter(target)
    held = out.copy()
    layer.estop("operator pressed the button")
    for _ in range(50):  # fresh, valid commands do not release it
        clock.advance(spec.period)
        np.testing.assert_array_equal(layer.filter(target), held)
        np.testing.assert_array_equal(layer.tick(), held)
    assert layer.estopped and layer.counts["estop_blocked"] == 50
    layer.reset()
    assert not layer.estopped and layer.tripped
    np.testing.assert_array_equal(layer.tick(), held)  # still safe until a fresh command
    clock.advance(spec.period)
    out = layer.filter(target)
    np.testing.assert_allclose(out, held + spec.max_delta)  # ramps from where it stopped
    kinds = [e.kind for e in layer.log]
    assert kinds.index("estop") < kinds.index("estop_reset")


def test_hold_dims_need_an_initial_command_and_shape_errors_are_clear():
    with pytest.raises(ConfigError, match="initial="):
        SafetyLayer(so100_spec())
    layer = SafetyLayer(wheel_loader_spec(), initial=np.zeros(6), clock=ManualClock())
    with pytest.raises(SpecError, match="expected 6 values"):
        layer.filter([0.0, 1.0])


class _Recorder:
    def __init__(self, state_dim):
        self.sent, self.state_dim, self.estops = [], state_dim, []

    def estop(self, active):
        self.estops.append(active)

    def connect(self):
        pass

    def disconnect(self):
        pass

    def read_state(self):
        return np.zeros(self.state_dim)

    def write_action(self, action):
        self.sent.append(np.array(action))


def test_safe_robot_sends_only_filtered_commands():
    backend = _Recorder(22)
    robot = create_robot("wheel_loader", backend=backend)
    clock = ManualClock()
    safe = SafeRobot(robot, SafetyLayer(robot.spec, initial=np.zeros(6), clock=clock))
    with robot:
        clock.advance(0.05)
        safe.send_action([5.0, 9.0, -3.0, np.inf, 0.0, 1.0])  # inf → rejected, safe state held
        clock.advance(0.05)
        safe.send_action([5.0, 9.0, -3.0, 0.0, 0.0, 1.0])
        safe.estop()
        clock.advance(0.05)
        safe.send_action([1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    sent = np.array(backend.sent)
    assert backend.estops == [True]  # the machine's own e-stop was sent too
    np.testing.assert_allclose(sent[0], [0, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(sent[1], [0.1, 0.0175, -0.2, 0.0, 0.5, 0.2])  # clamped then rate-limited
    np.testing.assert_allclose(sent[2], [0, 0.0175, 0, 0, 1, 0])
    np.testing.assert_allclose(sent[3], sent[2])
    with pytest.raises(SpecError, match="outside"):  # the robot itself refuses unfiltered limit violations
        robot.check_action([2.0, 0, 0, 0, 0, 0])
