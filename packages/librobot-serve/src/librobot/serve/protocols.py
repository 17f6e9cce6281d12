"""The optional capabilities a policy may offer the serving stack, and what the runtime needs from
the robot side. All torch-free.

A policy is anything implementing ``librobot.core.interfaces.PolicyInterface``. On top of it:

- **Real-time chunking** (flow/diffusion policies): ``predict_chunk(observation, task, *,
  prefix_actions=None, prefix_weights=None)``. ``prefix_actions`` [K, A] (K <= H) are the actions
  of the previous chunk that will execute from the step the observation was taken; ``prefix_weights``
  [K] in [0, 1] say how strongly the new chunk's step i must agree with ``prefix_actions[i]`` (1 for
  the steps that will run while inference is in flight, decaying after). Subclass
  ``RealTimeChunkingPolicy`` (or set ``supports_rtc = True``); ``librobot.serve.rtc`` has the
  guidance math a head calls at each denoising step.
- **Batching**: ``predict_chunks(observations, tasks, *, prefix_actions=None, prefix_weights=None)``
  with each observation value stacked on a leading batch axis → [B, H, A]. The servers' dynamic
  batcher uses it when present and falls back to per-request ``predict_chunk`` calls otherwise.
- **Boundary description**: ``input_features`` (name → ``FeatureSpec`` without batch axis) and
  ``known_tasks`` (the task strings it was trained on, or None for free text) let servers reject bad
  requests before they reach the model. ``thread_safe = True`` lets servers call it concurrently.
- **State parts**: ``state_parts`` (``[[key, width], ...]`` or ``StatePart``s) when the policy's
  ``observation.state`` joins several observation vectors; servers accept the parts as separate
  keys and join them before validating (``librobot.core.observations``).

The safety layer lives in ``librobot.robots``; the runtime accepts any object with its
``filter(action, now) -> action`` method (``SafetyFilter``), so this package never imports robots.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from librobot.core.errors import ConfigError
from librobot.core.interfaces import PolicyInterface
from librobot.core.observations import StatePart, parse_state_parts
from librobot.core.specs import FeatureSpec


class RealTimeChunkingPolicy(PolicyInterface):
    """A chunking policy that can condition a new chunk on the actions already committed."""

    supports_rtc = True

    @abstractmethod
    def predict_chunk(
        self,
        observation: Mapping[str, Any],
        task: str | None = None,
        *,
        prefix_actions: np.ndarray | None = None,
        prefix_weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """An action chunk [H, A]; with a prefix, its first steps follow ``prefix_actions``."""


@runtime_checkable
class BatchPolicy(Protocol):
    def predict_chunks(
        self,
        observations: Mapping[str, np.ndarray],
        tasks: Sequence[str | None],
        *,
        prefix_actions: np.ndarray | None = None,
        prefix_weights: np.ndarray | None = None,
    ) -> np.ndarray: ...


@runtime_checkable
class SafetyFilter(Protocol):
    """The robot safety layer's contract: a commanded action in, the action that may be sent out."""

    def filter(self, action: np.ndarray, now: float) -> np.ndarray: ...


@runtime_checkable
class Actuated(Protocol):
    """A robot or simulated environment the control loop drives (``RobotInterface`` fits)."""

    def get_observation(self) -> dict[str, np.ndarray]: ...

    def send_action(self, action: np.ndarray) -> None: ...


def supports_rtc(policy: Any) -> bool:
    return bool(getattr(policy, "supports_rtc", False))


def obs_horizon(policy: Any) -> int:
    """T_obs: observation frames per request (1 for policies that do not say)."""
    return int(getattr(policy, "obs_horizon", 1) or 1)


def recommended_execution(policy: Any) -> dict[str, Any]:
    """How the policy's chunks are meant to be executed (``{"mode": "ensemble", "ensemble_coeff": m}``
    for an ACT policy with temporal ensembling); ``{}`` when the policy has no preference."""
    value = getattr(policy, "execution", None)
    return dict(value) if value else {}


def supports_batch(policy: Any) -> bool:
    return callable(getattr(policy, "predict_chunks", None))


def input_features(policy: Any) -> dict[str, FeatureSpec] | None:
    features = getattr(policy, "input_features", None)
    return dict(features) if features else None


def state_parts(policy: Any) -> tuple[StatePart, ...]:
    """The observation vectors the policy's state joins, in order (``()``: observation.state as sent)."""
    return parse_state_parts(getattr(policy, "state_parts", None) or None, where=f"{type(policy).__name__}.state_parts")


def known_tasks(policy: Any) -> tuple[str, ...] | None:
    tasks = getattr(policy, "known_tasks", None)
    return tuple(tasks) if tasks else None


class _ClockedFilter:
    """Adapts a safety layer that reads its own clock (``filter(action)``, librobot.robots') to
    the runtime's ``filter(action, now)``; give both the same clock so their times agree."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer

    def filter(self, action: np.ndarray, now: float) -> np.ndarray:
        return self.layer.filter(action)

    def reset(self) -> None:
        reset = getattr(self.layer, "reset", None)
        if callable(reset):
            reset()


def as_safety_filter(safety: Any) -> SafetyFilter:
    """The runtime's view of ``safety``: ``filter(action, now)``, adapting ``filter(action)``;
    refuses None loudly."""
    if safety is None:
        raise ConfigError(
            "the runtime needs the robot's safety layer between the policy and the robot; pass "
            "safety=<an object with filter(action, now)> (librobot.robots' safety layer for the robot's spec)"
        )
    method = getattr(safety, "filter", None)
    if not callable(method):
        raise ConfigError(
            f"safety={type(safety).__name__} has no filter(action, now) method; pass the robot's safety layer"
        )
    try:
        params = [p for p in inspect.signature(method).parameters.values() if p.default is p.empty]
    except (TypeError, ValueError):
        return safety
    return _ClockedFilter(safety) if len(params) == 1 else safety
