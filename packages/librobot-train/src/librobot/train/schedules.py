"""Learning-rate schedules as closed forms of the step, so resuming needs only the step number.

With ``W`` warmup steps, ``T`` total steps and ``r`` = min_lr_ratio, the factor applied to every
group's base learning rate for the update at step ``s`` (0-based) is:

- warmup (s < W):  (s + 1) / W
- then, with p = clamp((s - W) / max(1, T - W), 0, 1):
  - constant: 1
  - linear:   1 - (1 - r) * p
  - cosine:   r + (1 - r) * (1 + cos(pi * p)) / 2

Under a time budget (``train.max_time``) the trainer sets ``p`` itself before every step: the
fraction of the budget used so far (``set_progress``), so the schedule reaches its end when the
time does, whatever the step rate. Warmup stays in steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from librobot.core.errors import ConfigError

KINDS = ("constant", "linear", "cosine")


def lr_factor(
    kind: str,
    step: int,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
    progress: float | None = None,
) -> float:
    """The multiplier of the base learning rate at ``step`` (see the module docstring);
    ``progress`` in [0, 1] replaces the step-based p (a time budget's fraction used)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown schedule '{kind}'; use one of {', '.join(KINDS)}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    if progress is None:
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        return 1.0 - (1.0 - min_lr_ratio) * progress
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class StepScheduler:
    """Sets ``lr = base_lr * factor(step, progress)`` on every param group; its whole state is the
    step (``progress`` is None, or what the trainer last set from its time budget).

    Each group's base learning rate is kept in the group as ``base_lr`` (so it travels with the
    optimizer state); ``step()`` is called once per optimizer step, after ``optimizer.step()``.
    """

    def __init__(self, optimizer: Any, factor: Callable[[int, float | None], float], *, name: str = "custom") -> None:
        self.optimizer = optimizer
        self.factor = factor
        self.name = name
        self.last_step = 0
        self.progress: float | None = None
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        self._apply()

    def _apply(self) -> None:
        f = self.factor(self.last_step, self.progress)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * f

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def set_progress(self, progress: float) -> None:
        """Follow ``progress`` (fraction of a time budget used) instead of the step count."""
        self.progress = float(progress)
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state["last_step"])
        self._apply()


def _factory(kind: str) -> Callable[..., StepScheduler]:
    def make(optimizer: Any, *, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> StepScheduler:
        if total_steps <= 0:
            raise ConfigError(f"{kind} schedule: total_steps must be > 0, got {total_steps}")

        def factor(step: int, progress: float | None) -> float:
            return lr_factor(
                kind,
                step,
                total_steps=total_steps,
                warmup_steps=warmup_steps,
                min_lr_ratio=min_lr_ratio,
                progress=progress,
            )

        return StepScheduler(optimizer, factor, name=kind)

    make.__name__ = f"{kind}_schedule"
    make.__doc__ = f"{kind.capitalize()} learning-rate schedule with linear warmup."
    return make


cosine_schedule = _factory("cosine")
linear_schedule = _factory("linear")
constant_schedule = _factory("constant")
