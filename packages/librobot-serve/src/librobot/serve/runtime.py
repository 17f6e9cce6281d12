"""The policy runtime: turns action chunks into one safe command per control tick.

Modes (``RuntimeConfig.mode``):

- ``sync``: query the policy when the plan is empty, execute ``n_action_steps`` of its chunk.
- ``ensemble``: query every step, command ACT's temporally ensembled action.
- ``RuntimeConfig.for_policy(policy, hz)`` (``mode="auto"``) runs a policy the way it recommends
  (``PolicyInterface.execution``: an ACT policy with ``temporal_ensemble`` ensembles), else ``sync``.
- ``async``: when at most ``async_threshold`` actions remain planned, request the next chunk in the
  background from the current observation and keep executing; when it arrives, drop the actions
  whose time has passed during inference (latency compensation) and switch to it.
- ``rtc``: ``async`` + real-time chunking: the request carries the actions that will execute while
  it runs (``prefix_actions``) with a soft mask (``prefix_weights``, ``librobot.serve.rtc``), so the
  policy inpaints a chunk that continues them instead of jumping. Needs an RTC-capable policy.

Every action passes the robot's safety layer (``filter(action, now)``) inside ``step``, so no
caller can bypass it. Time comes from an injectable clock and background inference from an
injectable executor, so the same loop runs on a robot, in simulation, and in deterministic tests.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from librobot.core.errors import ConfigError, SpecError
from librobot.core.interfaces import PolicyInterface, PolicyRuntimeInterface
from librobot.core.logging import get_logger
from librobot.serve.chunking import TemporalEnsembler, align_chunk
from librobot.serve.clock import Clock, MonotonicClock
from librobot.serve.history import ObservationHistory
from librobot.serve.protocols import Actuated, as_safety_filter, obs_horizon, recommended_execution, supports_rtc
from librobot.serve.rtc import SCHEDULES, prefix_weights
from librobot.serve.stats import LatencyRecorder

MODES = ("sync", "ensemble", "async", "rtc")
log = get_logger("serve.runtime")


@dataclass
class RuntimeConfig:
    control_hz: float
    mode: str = "sync"
    n_action_steps: int | None = None  # sync: actions executed per chunk (default: the whole chunk)
    ensemble_coeff: float = 0.01  # ensemble: ACT's m in exp(-m i)
    async_threshold: int | None = None  # async/rtc: request when <= this many remain (default H // 2)
    rtc_schedule: str = "exp"  # rtc: soft-mask decay over the overlap ("exp", "linear", "hard")

    @classmethod
    def for_policy(cls, policy: Any, control_hz: float, mode: str = "auto", **options: Any) -> RuntimeConfig:
        """A config for ``policy``; ``mode="auto"`` takes the execution the policy recommends
        (ACT with temporal ensembling: ``ensemble`` with its coefficient), else ``sync``."""
        if mode == "auto":
            wanted = recommended_execution(policy)
            mode = wanted.get("mode", "sync")
            if "ensemble_coeff" in wanted:
                options.setdefault("ensemble_coeff", float(wanted["ensemble_coeff"]))
        elif mode not in MODES:
            raise ConfigError(f"mode must be 'auto' or one of {MODES}, got {mode!r}")
        return cls(control_hz=control_hz, mode=mode, **options)

    def check(self, horizon: int) -> None:
        if not (math.isfinite(self.control_hz) and self.control_hz > 0):
            raise ConfigError(f"control_hz must be a positive number, got {self.control_hz}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.n_action_steps is not None and not 1 <= self.n_action_steps <= horizon:
            raise ConfigError(f"n_action_steps must be in [1, {horizon}] (the chunk size), got {self.n_action_steps}")
        if self.async_threshold is not None and not 0 <= self.async_threshold < horizon:
            raise ConfigError(f"async_threshold must be in [0, {horizon - 1}], got {self.async_threshold}")
        if self.rtc_schedule not in SCHEDULES:
            raise ConfigError(f"rtc_schedule must be one of {SCHEDULES}, got {self.rtc_schedule!r}")


@dataclass
class RuntimeStats:
    steps: int = 0
    inferences: int = 0
    overruns: int = 0  # steps whose observation → action latency exceeded the control period
    starved_steps: int = 0  # async: the plan ran out and the step waited for the pending chunk
    stale_chunks: int = 0  # async: a chunk arrived after its whole horizon had passed
    dropped_actions: int = 0  # async: actions of new chunks skipped because their time had passed
    inference_errors: int = 0
    last_delay_steps: int = 0
    latency: LatencyRecorder = field(default_factory=LatencyRecorder)  # observation → action
    inference_latency: LatencyRecorder = field(default_factory=LatencyRecorder)

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not isinstance(v, LatencyRecorder)}
        out["latency"] = self.latency.summary()
        out["inference_latency"] = self.inference_latency.summary()
        return out


@dataclass
class _Pending:
    future: Future
    start: int  # step whose observation the chunk was computed from
    submitted_at: float


class PolicyRuntime(PolicyRuntimeInterface):
    """Drives ``policy`` at ``config.control_hz``; every action goes through ``safety``."""

    def __init__(
        self,
        policy: PolicyInterface,
        safety: Any,
        config: RuntimeConfig,
        *,
        clock: Clock | None = None,
        executor: Any | None = None,
        task: str | None = None,
    ) -> None:
        self.policy = policy
        self.safety = as_safety_filter(safety)
        self.horizon = int(policy.chunk_size)
        self.action_dim = int(policy.action_dim)
        # a policy trained on windows of T_obs frames gets the same windows here
        steps = obs_horizon(policy)
        self.history = ObservationHistory(steps) if steps > 1 else None
        config.check(self.horizon)
        if config.mode == "rtc" and not supports_rtc(policy):
            raise ConfigError(
                f"mode='rtc' needs a policy that accepts prefix_actions/prefix_weights "
                f"(librobot.serve.protocols.RealTimeChunkingPolicy); {type(policy).__name__} does not. Use mode='async'."
            )
        self.config = config
        self.period = 1.0 / config.control_hz
        self.clock = clock or MonotonicClock()
        self._own_executor = executor is None and config.mode in ("async", "rtc")
        self.executor = (
            ThreadPoolExecutor(1, thread_name_prefix="librobot-inference") if self._own_executor else executor
        )
        self.n_action_steps = config.n_action_steps or self.horizon
        self.threshold = config.async_threshold if config.async_threshold is not None else self.horizon // 2
        self.task = task
        self.stats = RuntimeStats()
        self._ensembler = TemporalEnsembler(config.ensemble_coeff)
        self._plan: deque[np.ndarray] = deque()
        self._pending: _Pending | None = None
        self._delays: deque[int] = deque(maxlen=5)
        self._t = 0

    @property
    def needs_inference(self) -> bool:
        """True when the next ``step`` calls the policy synchronously (``sync`` with an empty plan, or
        ``ensemble``): a vectorised evaluator can compute those chunks for many runtimes in one batch."""
        return (self.config.mode == "sync" and not self._plan) or self.config.mode == "ensemble"

    # ------------------------------------------------------------------ lifecycle
    def reset(self, task: str | None = None) -> None:
        """Start a new episode: forget plans, pending inference, ensembles and statistics."""
        if task is not None:
            self.task = task
        self._plan.clear()
        self._pending = None  # a result still running in the background is ignored
        self._ensembler.reset()
        self._delays.clear()
        if self.history is not None:
            self.history.reset()
        self._t = 0
        self.stats = RuntimeStats()
        self.policy.reset()
        if callable(getattr(self.safety, "reset", None)):
            self.safety.reset()

    def close(self) -> None:
        if self._own_executor and self.executor is not None:
            self.executor.shutdown(wait=True)

    def __enter__(self) -> PolicyRuntime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ one tick
    def policy_input(self, observation: Mapping[str, Any]) -> Mapping[str, Any]:
        """What the policy would be given for ``observation`` at this tick (with the observation
        history when the policy reads one), without advancing anything: a vectorised evaluator
        batches these for many runtimes."""
        return observation if self.history is None else self.history.window(observation, commit=False)

    def step(self, observation: Mapping[str, Any], *, observed_at: float | None = None) -> np.ndarray:
        """The safe action for this tick; latency is counted from ``observed_at`` (default: now)."""
        start = self.clock.now() if observed_at is None else observed_at
        if self.history is not None:  # every tick enters the history, inference tick or not
            observation = self.history.window(observation)
        mode = self.config.mode
        if mode == "sync":
            if not self._plan:
                self._plan.extend(self._infer(observation)[: self.n_action_steps])
            action = self._plan.popleft()
        elif mode == "ensemble":
            self._ensembler.add(self._t, self._infer(observation))
            action = self._ensembler.action(self._t)
        else:
            action = self._async_action(observation)
        safe = np.asarray(self.safety.filter(action, self.clock.now()), dtype=np.float64)
        latency = self.clock.now() - start
        self.stats.latency.record(latency)
        self.stats.overruns += latency > self.period
        self.stats.steps += 1
        self._t += 1
        return safe

    def run(self, system: Actuated, steps: int) -> RuntimeStats:
        """Run ``steps`` ticks at the control rate on a robot or simulated environment.

        Ticks stay on the grid start + k/control_hz: ticks missed by an overrun are skipped, not made
        up in a burst. On an error the robot's safe action (through the safety layer) is sent before
        the error propagates.
        """
        next_tick = self.clock.now()
        try:
            for _ in range(steps):
                self.clock.sleep_until(next_tick)
                observation = system.get_observation()
                action = self.step(observation, observed_at=self.clock.now())
                system.send_action(action)
                next_tick += self.period
                late = self.clock.now() - next_tick
                if late > 0:
                    next_tick += self.period * math.ceil(late / self.period - 1e-9)
        except Exception:
            safe_action = getattr(system, "safe_action", None)
            if callable(safe_action):
                system.send_action(np.asarray(self.safety.filter(safe_action(), self.clock.now()), dtype=np.float64))
            raise
        return self.stats

    # ------------------------------------------------------------------ inference
    def _call_policy(
        self, observation: Mapping[str, Any], prefix: np.ndarray | None, weights: np.ndarray | None
    ) -> np.ndarray:
        if prefix is None:
            chunk = self.policy.predict_chunk(observation, self.task)
        else:
            chunk = self.policy.predict_chunk(observation, self.task, prefix_actions=prefix, prefix_weights=weights)
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[0] < 1 or chunk.shape[1] != self.action_dim:
            raise SpecError(
                f"{type(self.policy).__name__}.predict_chunk returned shape {list(chunk.shape)}; "
                f"expected [H, {self.action_dim}] (one chunk, no batch axis)"
            )
        if not np.isfinite(chunk).all():
            raise SpecError(f"{type(self.policy).__name__}.predict_chunk returned NaN or inf actions")
        return chunk

    def _infer(self, observation: Mapping[str, Any]) -> np.ndarray:
        """A blocking policy call (its time counts toward this step's latency)."""
        began = self.clock.now()
        chunk = self._call_policy(observation, None, None)
        self.stats.inference_latency.record(self.clock.now() - began)
        self.stats.inferences += 1
        return chunk

    def _async_action(self, observation: Mapping[str, Any]) -> np.ndarray:
        if self._pending is not None and self._pending.future.done():
            self._splice()
        if not self._plan:
            if self._pending is not None:  # the plan ran dry before the chunk came: wait for it
                self.stats.starved_steps += 1
                self._splice()
            if not self._plan:  # start of an episode (or after a failure): wait for a first chunk
                began = self.clock.now()
                self._pending = _Pending(
                    self.executor.submit(self._call_policy, observation, None, None), self._t, began
                )
                self._splice()
        action = self._plan.popleft()
        if self._pending is None and len(self._plan) <= self.threshold:
            self._submit(observation, np.stack([action, *self._plan]))
        return action

    def _submit(self, observation: Mapping[str, Any], remaining: np.ndarray) -> None:
        # Copy: a driver may reuse its buffers while the background call still reads them.
        snapshot = {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v for k, v in observation.items()}
        prefix = weights = None
        if self.config.mode == "rtc":
            overlap = min(len(remaining), self.horizon)
            frozen = min(max(self._delays, default=1), overlap)
            prefix = remaining[:overlap].astype(np.float32)
            weights = prefix_weights(self.horizon, frozen, overlap, self.config.rtc_schedule)[:overlap]
        future = self.executor.submit(self._call_policy, snapshot, prefix, weights)
        self._pending = _Pending(future, self._t, self.clock.now())

    def _splice(self) -> None:
        """Switch the plan to the pending chunk, dropping the actions whose time has passed."""
        pending, self._pending = self._pending, None
        try:
            chunk = pending.future.result()
        except Exception as exc:
            self.stats.inference_errors += 1
            if not self._plan:  # nothing left to execute: the caller must stop the robot
                raise
            # Keep executing the current plan; the next step sends a new request.
            log.warning("background inference failed (%s); continuing with the current plan", exc)
            return
        latency = self.clock.now() - pending.submitted_at
        self.stats.inferences += 1
        self.stats.inference_latency.record(latency)
        future_part, dropped = align_chunk(chunk, pending.start, self._t)
        self.stats.last_delay_steps = self._t - pending.start
        # The delay (in steps) the next RTC request freezes: observed, or the latency of a blocking call.
        self._delays.append(max(1, self._t - pending.start, math.ceil(latency / self.period - 1e-9)))
        self.stats.dropped_actions += dropped
        if len(future_part) == 0:
            self.stats.stale_chunks += 1
            return
        self._plan.clear()
        self._plan.extend(future_part)
