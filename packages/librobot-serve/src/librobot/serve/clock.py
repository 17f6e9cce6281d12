"""Clocks and executors the runtime is written against, so control loops run in real time on a
robot and in simulated time in tests and evaluations (no sleeps, fully deterministic).

- ``MonotonicClock``: ``time.perf_counter`` + ``time.sleep``.
- ``FakeClock``: time moves only when told (``advance``/``sleep_until``); a policy wrapper or the
  ``SimulatedLatencyExecutor`` advance it to model inference time.
- ``SimulatedLatencyExecutor``: runs the job at submission but reports it done only once the clock
  has passed ``submit time + latency``; waiting on it advances a ``FakeClock``. This is how a
  simulation evaluates asynchronous inference / real-time chunking under a given inference delay.
- ``InlineExecutor``: runs the job at submission, done at once (zero latency).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float: ...

    def sleep_until(self, deadline: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, deadline: float) -> None:
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)


class FakeClock:
    """Simulated time, starting at ``start`` seconds."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"time cannot go backwards (advance by {seconds})")
        with self._lock:
            self._t += seconds

    def sleep_until(self, deadline: float) -> None:
        with self._lock:
            self._t = max(self._t, float(deadline))


class _ClockFuture(Future):
    """A finished future that reports done only once ``clock`` reaches ``ready_at``."""

    def __init__(self, clock: Clock, ready_at: float) -> None:
        super().__init__()
        self._clock = clock
        self.ready_at = ready_at

    def done(self) -> bool:
        return self._clock.now() >= self.ready_at and super().done()

    def result(self, timeout: float | None = None) -> Any:
        self._clock.sleep_until(self.ready_at)
        return super().result(timeout)


class SimulatedLatencyExecutor:
    """Completes each job ``latency`` seconds of ``clock`` time after it was submitted."""

    def __init__(self, clock: Clock, latency: float | Callable[[], float]) -> None:
        self.clock = clock
        self._latency = latency
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        latency = self._latency() if callable(self._latency) else self._latency
        future = _ClockFuture(self.clock, self.clock.now() + float(latency))
        self.submitted += 1
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered through the future, as a thread pool would
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True) -> None:
        return None


class InlineExecutor(SimulatedLatencyExecutor):
    """Runs jobs at submission with no latency (synchronous, for debugging and tests)."""

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock or MonotonicClock(), 0.0)
