"""The callback interface. Every hook is optional; hooks run in ``order`` (lower first).

The trainer calls, on every rank unless ``main_process_only``:

- ``on_train_start(trainer)``: after setup and any resume (``trainer.step`` is the resumed step)
- ``on_step_end(trainer)``: after each optimizer step
- ``on_log(trainer, metrics)``: at logging steps and after evaluations, with a flat dict
  (``step``, ``train/loss``, ``val/loss``…) that earlier callbacks may extend
- ``on_evaluate(trainer, metrics)``: during an evaluation, to add metrics (e.g. closed-loop
  success rates); the merged result is broadcast from rank 0, so every rank sees the same numbers
- ``on_eval_end(trainer, metrics)``: with the final evaluation metrics (checkpoint choice, early stop)
- ``on_checkpoint(trainer, path)``: after a checkpoint was written
- ``on_train_end(trainer)`` and ``on_exception(trainer, exc)``

A callback with state that must survive a resume returns it (JSON-able) from ``state_dict`` and
takes it back in ``load_state_dict``; it is stored in the checkpoint under ``state_key``.
To stop training call ``trainer.request_stop(reason)``; to save, ``trainer.request_checkpoint()``
(the save happens after every callback has seen the step).
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from librobot.train.trainer import Trainer


class Callback(ABC):  # noqa: B024 - every hook is optional by design
    order: int = 0
    main_process_only: bool = False

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def on_train_start(self, trainer: Trainer) -> None:
        return None

    def on_step_end(self, trainer: Trainer) -> None:
        return None

    def on_log(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        return None

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        return None

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        return None

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        return None

    def on_train_end(self, trainer: Trainer) -> None:
        return None

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class CallbackList:
    """Dispatches hooks in order, skipping main-process-only callbacks on other ranks."""

    def __init__(self, callbacks: Iterable[Callback], *, is_main: bool) -> None:
        self.callbacks = sorted(callbacks, key=lambda c: c.order)
        self.is_main = is_main
        keys = [c.state_key for c in self.callbacks]
        if len(set(keys)) != len(keys):
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"two callbacks share the state key(s) {dupes}; give one a distinct state_key")

    def __iter__(self) -> Any:
        return iter(self.callbacks)

    def find(self, kind: type) -> Callback | None:
        return next((c for c in self.callbacks if isinstance(c, kind)), None)

    def call(self, hook: str, trainer: Trainer, *args: Any) -> None:
        for callback in self.callbacks:
            if callback.main_process_only and not self.is_main:
                continue
            getattr(callback, hook)(trainer, *args)

    def state_dict(self) -> dict[str, Any]:
        return {c.state_key: c.state_dict() for c in self.callbacks}

    def load_state_dict(self, states: dict[str, Any]) -> None:
        for callback in self.callbacks:
            if callback.state_key in states:
                callback.load_state_dict(states[callback.state_key])
