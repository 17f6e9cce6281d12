"""Config → run: what ``librobot train`` and ``librobot-train`` do."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from librobot.core.logging import configure_logging, get_logger
from librobot.train.config import RunConfig, to_run_config

log = get_logger("train")


def train_from_config(
    cfg: RunConfig | Mapping[str, Any] | Any,
    *,
    run_dir: str | Path | None = None,
    resume: Any = None,
    callbacks: Iterable[Any] = (),
    configure_logs: bool = True,
) -> Any:
    """Build datasets, model and callbacks from a config (see ``librobot.train.factories``), train,
    and return the ``TrainResult``. Under ``torchrun`` every process calls this.

    The config is the caller's own, so its ``module:attr`` factories are honoured here (and only
    here: artifacts loaded during the run refuse them, see ``librobot.core.references``)."""
    from librobot.core.references import code_references

    with code_references():
        return _train(cfg, run_dir=run_dir, resume=resume, callbacks=callbacks, configure_logs=configure_logs)


def _train(
    cfg: RunConfig | Mapping[str, Any] | Any,
    *,
    run_dir: str | Path | None,
    resume: Any,
    callbacks: Iterable[Any],
    configure_logs: bool,
) -> Any:
    from librobot.core.seeding import seed_everything
    from librobot.train.distributed import DistContext
    from librobot.train.factories import build_callbacks, build_datasets, build_model
    from librobot.train.trainer import Trainer

    run = to_run_config(cfg)
    if run_dir is not None:
        run.run_dir = str(run_dir)
    folder = run.resolved_run_dir
    dist = DistContext.setup(run.distributed, run.train.device)
    try:
        if configure_logs:
            configure_logging(
                run.logging.level if dist.is_main else "WARNING", file=folder / "train.log" if dist.is_main else None
            )
        # Same seed on every rank: the model must start identical everywhere (FSDP shards it as built).
        seed_everything(run.train.seed)
        train_set, val_set = build_datasets(run.data)
        model = build_model(run.model, dataset=train_set)
        extra = build_callbacks(run.callbacks) + list(callbacks)
        if dist.is_main:
            params = sum(p.numel() for p in model.parameters())
            log.info(
                "model %s: %.3fM parameters; %d training samples%s",
                type(model).__name__,
                params / 1e6,
                len(train_set) if hasattr(train_set, "__len__") else -1,
                f", {len(val_set)} validation samples" if val_set is not None and hasattr(val_set, "__len__") else "",
            )
        trainer = Trainer(
            model,
            train_set,
            config=run,
            val_data=val_set,
            callbacks=extra,
            run_dir=folder,
            resume=resume if resume is not None else run.resume,
            dist=dist,
        )
        return trainer.fit()
    finally:
        dist.shutdown()
