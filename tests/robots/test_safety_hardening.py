"""Safety layer under hostile input: non-real commands and clocks that run backwards."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from librobot.core.errors import ConfigError, SpecError
from librobot.robots import ManualClock, SafetyLayer
from librobot.robots.wheel_loader import wheel_loader_spec

CMD = np.array([0.8, 0.2, 0.5, 0.5, 0.0, 1.0])


def _running_layer(start: float = 100.0) -> tuple[SafetyLayer, ManualClock]:
    """A wheel-loader layer that has been following CMD for 60 periods (fully ramped up)."""
    spec = wheel_loader_spec()
    clock = ManualClock(start)
    layer = SafetyLayer(spec, initial=np.zeros(6), clock=clock)
    for _ in range(60):
        clock.advance(spec.period)
        out = layer.filter(CMD)
    np.testing.assert_allclose(out, CMD)
    assert not layer.tripped
    return layer, clock


@pytest.mark.parametrize(
    ("command", "dtype"),
    [
        (CMD + 1e-3j, "complex128"),  # float64 conversion would drop the imaginary part
        (CMD.astype(np.complex64), "complex64"),  # even with zero imaginary parts: a complex dtype is a bug
        (np.array([True, False, True, False, False, True]), "bool"),
        (np.array(["0.8", "0.2", "0.5", "0.5", "0", "1"]), "<U3"),  # float64 would parse the strings
        ([0.8, None, 0.5, 0.5, 0.0, 1.0], "object"),
    ],
)
def test_non_real_commands_are_refused_and_change_nothing(command, dtype):
    layer, clock = _running_layer()
    before, fresh_count = layer.command, len(layer.log)
    clock.advance(layer.spec.period)
    with pytest.raises(SpecError, match=rf"safety layer for 'wheel_loader': expected real numbers .*got dtype {dtype}"):
        layer.filter(command)
    np.testing.assert_array_equal(layer.command, before)
    assert len(layer.log) == fresh_count and not layer.tripped
    # Not fresh either: the stalled policy still trips the watchdog two periods later.
    clock.advance(layer.spec.period)
    layer.tick()
    assert layer.tripped


def test_ragged_commands_and_complex_initial_commands_are_named_errors():
    layer, _ = _running_layer()
    with pytest.raises(SpecError, match="safety layer for 'wheel_loader': expected an array of real numbers, got list"):
        layer.filter([[0.1, 0.2], [0.3]])
    with pytest.raises(ConfigError, match=r"initial command: expected real numbers .*got dtype complex128"):
        SafetyLayer(wheel_loader_spec(), initial=np.zeros(6) + 1j, clock=ManualClock())
    # Integer commands are real numbers: accepted, as floats.
    ints = SafetyLayer(wheel_loader_spec(), initial=np.zeros(6, np.int64), clock=ManualClock())
    assert ints.command.dtype == np.float64


def test_the_layer_picks_a_monotonic_clock_itself():
    assert SafetyLayer(wheel_loader_spec(), initial=np.zeros(6)).clock is time.monotonic


def test_a_clock_that_jumps_back_still_trips_the_watchdog(caplog):
    caplog.set_level(logging.ERROR, logger="librobot.robots.safety")
    layer, clock = _running_layer(start=100.0)
    period = layer.spec.period
    clock.now = 50.0  # the injected clock steps back 53 s; the policy has stalled
    trip_after = None
    for k in range(1, 11):  # the control loop keeps ticking, each one period of fake-clock silence later
        out = layer.tick()
        if layer.tripped:
            trip_after = k * period
            break
        clock.advance(period)
    # Before: now - last_fresh < 0 for ~53 s, so the watchdog never tripped in these 10 periods.
    assert trip_after is not None and trip_after <= 2 * period + 1e-9
    np.testing.assert_allclose(out, layer.spec.safe_command(CMD))
    assert out[0] == 0.0 and out[4] == 1.0  # throttle off, brake on
    assert layer.counts["clock_fault"] == 1 and "clock read 50.0 after" in layer.log[-2].detail
    assert layer.log[-1].kind == "watchdog_trip"


def test_after_a_backwards_jump_the_watchdog_runs_on_the_new_timeline(caplog):
    caplog.set_level(logging.ERROR, logger="librobot.robots.safety")
    layer, clock = _running_layer(start=100.0)
    spec, period = layer.spec, layer.spec.period
    clock.now = 50.0
    np.testing.assert_allclose(layer.filter(CMD), spec.safe_command(CMD))  # a time that cannot be trusted
    assert layer.tripped and layer.counts["clock_fault"] == 1
    clock.advance(period)
    out = layer.filter(CMD)  # the clock moves forward again: fresh, ramping up from the safe state
    assert not layer.tripped and out[0] == pytest.approx(spec.max_delta[0])
    last_fresh = clock.now
    for _ in range(10):  # silence measured on the new timeline
        clock.advance(period)
        layer.tick()
        if layer.tripped:
            break
    assert layer.tripped and clock.now - last_fresh <= 2 * period + 1e-9
    assert layer.counts["clock_fault"] == 1  # one fault per jump, not one per tick until 100 s is reached


def test_a_nan_clock_trips_the_watchdog(caplog):
    caplog.set_level(logging.ERROR, logger="librobot.robots.safety")
    layer, clock = _running_layer()
    clock.now = float("nan")
    out = layer.filter(CMD)
    assert layer.tripped and out[0] == 0.0 and out[4] == 1.0
    assert layer.counts["clock_fault"] == 1
