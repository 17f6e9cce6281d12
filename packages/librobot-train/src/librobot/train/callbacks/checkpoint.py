"""Checkpoint scheduling (periodic + best by a monitored metric) and early stopping."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from librobot.core.errors import ConfigError
from librobot.core.logging import get_logger
from librobot.train.callbacks.base import Callback

if TYPE_CHECKING:  # pragma: no cover
    from librobot.train.trainer import Trainer

log = get_logger("train.callbacks")


def _improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _metric(metrics: dict[str, Any], key: str | None) -> float | None:
    if key is None or key not in metrics:
        return None
    value = metrics[key]
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class ModelCheckpoint(Callback):
    """Asks for a checkpoint every ``every_n_steps`` and whenever ``monitor`` improves at an
    evaluation (that one becomes the best checkpoint, kept beside the last N)."""

    order = 100  # after the callbacks that add evaluation metrics

    def __init__(self, every_n_steps: int = 500, monitor: str | None = "val/loss", mode: str = "min") -> None:
        if mode not in ("min", "max"):
            raise ConfigError(f"checkpoint mode must be 'min' or 'max', got {mode!r}")
        self.every_n_steps, self.monitor, self.mode = int(every_n_steps), monitor, mode
        self.best_value: float | None = None
        self.best_step: int | None = None
        self._seen_monitor = False

    def on_step_end(self, trainer: Trainer) -> None:
        if self.every_n_steps and trainer.step % self.every_n_steps == 0:
            trainer.request_checkpoint()

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        value = _metric(metrics, self.monitor)
        if value is None:
            return
        self._seen_monitor = True
        if _improved(value, self.best_value, self.mode):
            self.best_value, self.best_step = value, trainer.step
            trainer.request_checkpoint(best={"monitor": self.monitor, "value": value, "mode": self.mode})

    def on_train_end(self, trainer: Trainer) -> None:
        if self.monitor and not self._seen_monitor and self.best_step is None and trainer.dist.is_main:
            log.info(
                "checkpoint.monitor '%s' was never reported (no evaluation produced it): no best checkpoint",
                self.monitor,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_step": self.best_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value, self.best_step = state.get("best_value"), state.get("best_step")


class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved by ``min_delta`` for ``patience`` evaluations."""

    order = 90

    def __init__(self, monitor: str = "val/loss", mode: str = "min", patience: int = 5, min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ConfigError(f"early-stopping mode must be 'min' or 'max', got {mode!r}")
        if patience < 1:
            raise ConfigError(f"early-stopping patience must be >= 1, got {patience}")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, int(patience), float(min_delta)
        self.best: float | None = None
        self.bad_evals = 0
        self.stopped_at: int | None = None

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        value = _metric(metrics, self.monitor)
        if value is None:
            if self.monitor not in metrics and trainer.dist.is_main:
                log.warning(
                    "early stopping: metric '%s' is not among the evaluation metrics %s", self.monitor, sorted(metrics)
                )
            return
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.bad_evals = value, 0
            return
        self.bad_evals += 1
        if self.bad_evals >= self.patience:
            self.stopped_at = trainer.step
            trainer.request_stop(
                f"early stopping: {self.monitor} did not improve for {self.patience} evaluations (best {self.best:.6g})"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evals": self.bad_evals, "stopped_at": self.stopped_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_evals, self.stopped_at = (
            state.get("best"),
            int(state.get("bad_evals", 0)),
            state.get("stopped_at"),
        )
