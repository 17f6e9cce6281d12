"""The safety layer between any policy and any robot.

Per command: reject NaN/inf (hold the last safe command), clamp to the limits, limit the change per
control period (``spec.max_rate / control_hz``). Per control tick: a watchdog switches to the
robot's safe command when no fresh valid command arrived within ``watchdog_timeout`` (default 1.5
periods, so with one tick per period it trips at most two periods after a stall). An e-stop latch
holds the safe command until ``reset()`` is called explicitly. Every intervention is logged.

Switching *to* the safe command (watchdog trip, e-stop) is deliberately not rate-limited: the brake
must come on now. Leaving it is: after a trip or a reset, commands ramp up from the safe state.

The clock is injectable (``clock=``) so tests drive time by hand instead of sleeping; by default it
is ``time.monotonic``. An injected clock that steps backwards (or reads NaN) would make every command
look fresh and so disable the watchdog: such a reading is a ``clock_fault`` that trips it instead.

Commands must be real numbers (int or float arrays): complex, bool, string and object values are
refused with a SpecError rather than converted (a complex command would silently lose its imaginary part).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from librobot.core.errors import ConfigError, SpecError
from librobot.robots.spec import HOLD, RobotSpec

log = logging.getLogger("librobot.robots.safety")


@dataclass(frozen=True)
class Intervention:
    """One thing the safety layer did to a command: when, what, to which dimensions, and why."""

    time: float
    # clamp, rate_limit, reject_nonfinite, watchdog_trip, watchdog_clear, clock_fault, estop, estop_blocked, estop_reset
    kind: str
    dims: tuple[str, ...] = ()
    detail: str = ""
    values: tuple[float, ...] = ()  # the offending requested values of ``dims`` (clamp)

    def __str__(self) -> str:
        vals = f" requested {dict(zip(self.dims, self.values))}" if self.values else ""
        dims = f" on {', '.join(self.dims)}" if self.dims and not self.values else ""
        return f"t={self.time:.4f} {self.kind}{dims}{vals}{' (' + self.detail + ')' if self.detail else ''}"


class ManualClock:
    """A clock that moves only when told to (for tests and replay)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> float:
        self.now += float(dt)
        return self.now


class SafetyLayer:
    """Filters commands for ``spec``; ``initial`` is the command in force now (required when some
    dimension's safe value is HOLD, e.g. an arm's current joint positions)."""

    def __init__(
        self,
        spec: RobotSpec,
        *,
        initial: np.ndarray | None = None,
        watchdog_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_size: int | None = 100_000,
    ) -> None:
        self.spec = spec
        self._what = f"safety layer for '{spec.name}'"
        self.names = spec.action_space.names
        self._names = np.array(self.names, dtype=object)
        self.low, self.high = spec.action_space.low_array, spec.action_space.high_array
        self.max_delta = spec.max_delta
        self._neg_delta = -self.max_delta
        self._hold = np.array([v == HOLD for v in spec.safe_action])
        self._safe_values = np.array([0.0 if v == HOLD else float(v) for v in spec.safe_action])
        self.timeout = 1.5 * spec.period if watchdog_timeout is None else float(watchdog_timeout)
        if not self.timeout > 0:
            raise ConfigError(f"watchdog_timeout must be > 0 s, got {watchdog_timeout}")
        self.clock = clock
        if initial is None:
            held = [n for n, s in zip(self.names, spec.safe_action) if s == HOLD]
            if held:
                raise ConfigError(
                    f"robot '{spec.name}' holds {held} in its safe state, so the safety layer needs the command "
                    f"in force now: pass initial=<current positions/targets> (e.g. from the first observation)"
                )
            initial = spec.safe_command(None)
        initial = _real(initial, ConfigError, "initial command")
        if initial.shape != (spec.action_dim,) or not np.isfinite(initial).all():
            raise ConfigError(f"initial command must be {spec.action_dim} finite values, got {initial!r}")
        self._command = np.clip(initial, self.low, self.high)
        self._last_fresh: float | None = None  # no fresh command yet: the watchdog holds the safe state
        self._last_time: float | None = None  # the clock's previous reading, to notice it running backwards
        self._tripped = False
        self._estopped = False
        self.log: deque[Intervention] = deque(maxlen=log_size)
        self.counts: Counter[str] = Counter()
        # Until the first fresh command the robot stays in its safe state (not logged: nothing was overridden).
        self._tripped = True
        self._command = spec.safe_command(self._command)

    # ------------------------------------------------------------------ state
    @property
    def command(self) -> np.ndarray:
        """The command currently in force (what was last returned)."""
        return self._command.copy()

    @property
    def tripped(self) -> bool:
        return self._tripped

    @property
    def estopped(self) -> bool:
        return self._estopped

    def _record(
        self, now: float, kind: str, dims: tuple[str, ...] = (), detail: str = "", values: tuple[float, ...] = ()
    ) -> None:
        self.log.append(Intervention(now, kind, dims, detail, values))
        self.counts[kind] += 1
        if kind in ("watchdog_trip", "clock_fault", "estop", "estop_reset"):
            log.warning("safety %s %s", kind, detail)

    def _now(self) -> tuple[float, bool]:
        """The clock's reading and whether it can be trusted. A reading before the previous one (or
        NaN) cannot measure the time since the last fresh command: it trips the watchdog."""
        now = float(self.clock())
        last = self._last_time
        if math.isfinite(now):
            self._last_time = now  # the next step is measured from here: one fault per backwards jump
            if last is None or now >= last:
                return now, True
        self._record(now, "clock_fault", (), f"clock read {now} after {last}; use a monotonic clock (time.monotonic)")
        self._last_fresh = None
        if not self._tripped:
            self._tripped = True
            self._record(now, "watchdog_trip", (), "clock fault")
        return now, False

    def _safe(self) -> np.ndarray:
        self._command = np.where(self._hold, self._command, self._safe_values)  # == spec.safe_command(command)
        return self._command.copy()

    # ------------------------------------------------------------------ commands
    def filter(self, action: Any) -> np.ndarray:
        """A fresh command from the policy → the command to send now."""
        a = _real(action, SpecError, self._what)
        if a.shape != (self.spec.action_dim,):
            names = ", ".join(self.names)
            raise SpecError(f"{self._what}: expected {self.spec.action_dim} values ({names}), got shape {a.shape}")
        now, time_ok = self._now()
        if self._estopped:
            self._record(now, "estop_blocked", (), "command ignored while the e-stop is latched")
            return self._safe()
        if not time_ok:
            return self._safe()  # no valid time to call it fresh by; _now() tripped the watchdog
        finite = np.isfinite(a)
        if not finite.all():
            self._record(now, "reject_nonfinite", tuple(self._names[~finite]), "held the last safe command")
            return self.tick()  # not fresh: a policy emitting NaN must still trip the watchdog
        # Plain ufuncs rather than np.clip: this runs every control tick on the robot's computer.
        target = np.minimum(np.maximum(a, self.low), self.high)
        clamped = target != a
        if clamped.any():
            self._record(now, "clamp", tuple(self._names[clamped]), values=tuple(a[clamped].tolist()))
        if self._tripped:
            self._tripped = False
            self._record(now, "watchdog_clear", (), "fresh command; ramping from the safe state")
        want = target - self._command
        step = np.minimum(np.maximum(want, self._neg_delta), self.max_delta)
        limited = step != want
        if limited.any():
            self._record(now, "rate_limit", tuple(self._names[limited]))
        self._command = np.minimum(np.maximum(self._command + step, self.low), self.high)
        self._last_fresh = now
        return self._command.copy()

    def tick(self) -> np.ndarray:
        """A control tick without a fresh command: hold the command, or go safe if it is stale."""
        now, time_ok = self._now()
        if self._estopped or not time_ok:
            return self._safe()
        stale = self._last_fresh is None or now - self._last_fresh > self.timeout
        if stale and not self._tripped:
            self._tripped = True
            age = "never" if self._last_fresh is None else f"{now - self._last_fresh:.4g} s ago"
            self._record(now, "watchdog_trip", (), f"last fresh command {age} (timeout {self.timeout:.4g} s)")
        return self._safe() if self._tripped else self._command.copy()

    def estop(self, reason: str = "") -> np.ndarray:
        """Latch the e-stop and return the safe command; only ``reset()`` releases it."""
        if not self._estopped:
            self._estopped = True
            self._record(self._now()[0], "estop", (), reason or "e-stop requested")
        return self._safe()

    def reset(self) -> None:
        """Release the e-stop. The watchdog stays tripped until a fresh command arrives."""
        if self._estopped:
            self._estopped = False
            self._tripped = True
            self._last_fresh = None
            self._record(self._now()[0], "estop_reset", (), "e-stop released by reset()")


def _real(value: Any, error: type[Exception], what: str) -> np.ndarray:
    """``value`` as float64, refusing what float64 would silently reinterpret (complex, bool, str, object)."""
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nesting
        raise error(f"{what}: expected an array of real numbers, got {type(value).__name__} ({exc})") from None
    if a.dtype.kind not in "iuf":
        raise error(
            f"{what}: expected real numbers (an int or float array), got dtype {a.dtype}; complex, bool, string "
            f"and object values are refused rather than converted: send the float command itself"
        )
    return a.astype(np.float64, copy=False)


class SafeRobot:
    """A robot whose every command goes through a ``SafetyLayer``.

    ``send_action`` filters a fresh command; ``tick`` must be called on control ticks without one
    (it is what lets the watchdog act); ``estop`` latches and commands the safe state at once.
    """

    def __init__(self, robot: Any, layer: SafetyLayer) -> None:
        self.robot, self.layer = robot, layer

    def send_action(self, action: Any) -> np.ndarray:
        cmd = self.layer.filter(action)
        self.robot.send_action(cmd)
        return cmd

    def tick(self) -> np.ndarray:
        cmd = self.layer.tick()
        self.robot.send_action(cmd)
        return cmd

    def estop(self, reason: str = "") -> np.ndarray:
        cmd = self.layer.estop(reason)
        self.robot.send_action(cmd)
        hardware_stop = getattr(self.robot, "emergency_stop", None)
        if callable(hardware_stop):
            hardware_stop(True)
        return cmd

    def reset(self) -> None:
        self.layer.reset()
        hardware_stop = getattr(self.robot, "emergency_stop", None)
        if callable(hardware_stop):
            hardware_stop(False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.robot, name)
