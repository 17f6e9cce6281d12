"""Training callbacks that connect the trainer to policies: export the trained policy, and measure
closed-loop success in simulated tasks during training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from librobot.core.logging import get_logger
from librobot.train.callbacks.base import Callback

if TYPE_CHECKING:  # pragma: no cover
    from librobot.train.trainer import Trainer

log = get_logger("train.eval")


def _ema_context(trainer: Trainer) -> Any:
    use = trainer.ema is not None and trainer.config.ema.use_for_eval
    return trainer.ema.swapped_in(trainer.module) if use and trainer.ema is not None else nullcontext()


class ExportPolicy(Callback):
    """At the end of training, write ``<run>/<directory>``: the policy (EMA weights when enabled)
    as a self-contained folder that ``librobot eval``, ``export`` and ``serve`` load."""

    order = 100
    main_process_only = True

    def __init__(self, directory: str = "policy") -> None:
        self.directory = directory

    def on_train_end(self, trainer: Trainer) -> None:
        save = getattr(trainer.module, "save_pretrained", None)
        if not callable(save):
            log.warning("%s has no save_pretrained: no policy folder written", type(trainer.module).__name__)
            return
        with _ema_context(trainer):
            path = save(trainer.run_dir / self.directory)
        log.info("policy written to %s", path)


class ClosedLoopEval(Callback):
    """At every evaluation, roll the policy out in simulated tasks and add ``sim/success`` (and per
    env ``sim/success/<env>``) to the metrics, so checkpoints can be chosen by success rate."""

    order = 50

    def __init__(
        self,
        envs: Sequence[str] | str,
        episodes: int = 10,
        num_envs: int = 8,
        n_action_steps: int | None = None,
        max_steps: int | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.envs, self.episodes, self.num_envs = envs, episodes, num_envs
        self.n_action_steps, self.max_steps, self.env_kwargs = n_action_steps, max_steps, dict(env_kwargs or {})

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if not trainer.is_main:
            return  # the trainer broadcasts rank 0's metrics
        from librobot.serve.torch_policy import TorchPolicy
        from librobot.train.evaluation.closed_loop import evaluate_closed_loop

        was_training = trainer.module.training
        try:
            report = evaluate_closed_loop(
                TorchPolicy(trainer.module),
                self.envs,
                self.episodes,
                num_envs=self.num_envs,
                n_action_steps=self.n_action_steps,
                max_steps=self.max_steps,
                env_kwargs=self.env_kwargs,
            )
        finally:
            trainer.module.train(was_training)
        metrics["sim/success"] = report.success_rate
        for env, summary in report.per_env().items():
            metrics[f"sim/success/{env}"] = summary.success_rate
