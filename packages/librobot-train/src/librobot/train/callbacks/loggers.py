"""Where metrics go: metrics.jsonl, the console (rich progress bar or log lines), TensorBoard,
Weights & Biases, and the curves PNG. All of them act on the main process only."""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from librobot.core.checkpoint import atomic_write_text
from librobot.core.extras import require
from librobot.core.logging import get_logger, progress_enabled
from librobot.train.callbacks.base import Callback
from librobot.train.metrics import JsonlWriter, read_jsonl
from librobot.train.plotting import plot_curves

if TYPE_CHECKING:  # pragma: no cover
    from librobot.train.trainer import Trainer

log = get_logger("train")


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"
    }


class LRMonitor(Callback):
    """Adds ``lr/<group>`` (one per configured param group) to the training metrics."""

    order = -50

    def on_log(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if "train/loss" not in metrics:
            return
        for group in trainer.optimizer.param_groups:
            key = "lr/" + str(group.get("name", "default")).split("/")[0]
            metrics.setdefault(key, float(group["lr"]))


class JSONLLogger(Callback):
    """Appends every logged record to ``<run>/metrics.jsonl`` (see librobot.train.metrics)."""

    main_process_only = True

    def __init__(self, filename: str = "metrics.jsonl") -> None:
        self.filename = filename
        self.writer: JsonlWriter | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        self.writer = JsonlWriter(trainer.run_dir / self.filename)
        dropped = self.writer.truncate_after(trainer.step)
        if dropped:
            log.info(
                "metrics.jsonl: dropped %d records logged after step %d (they are replayed by the resume)",
                dropped,
                trainer.step,
            )

    def on_log(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.append({"step": trainer.step, **{k: v for k, v in metrics.items() if k != "step"}})

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        if self.writer is not None:
            self.writer.sync()

    def on_train_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.sync()
            self.writer.close()


def _progress(trainer: Trainer) -> tuple[float, float | None]:
    """(done, total) for the progress bar: seconds of a time budget, else steps."""
    if getattr(trainer, "max_time_s", None) is not None:
        return trainer.train_seconds, trainer.max_time_s
    return trainer.step, trainer.max_steps


def _target(trainer: Trainer) -> str:
    """Where the run ends: "3000", "25m budget", or "3000 or 25m budget"."""
    budget = getattr(trainer, "max_time_s", None)
    parts = [str(trainer.max_steps)] if trainer.max_steps is not None else []
    if budget is not None:
        parts.append(f"{budget / 60:.4g}m budget ({100 * trainer.budget_fraction:.0f}% used)")
    return " or ".join(parts)


class ConsoleLogger(Callback):
    """A rich progress bar (loss, lr, samples/s) on a terminal; plain log lines otherwise."""

    main_process_only = True
    order = 10

    def __init__(self, progress: bool | None = None) -> None:
        self.progress_setting = progress
        self._progress: Any = None
        self._task: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        show = progress_enabled() if self.progress_setting is None else self.progress_setting
        if show:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._progress.start()
            done, total = _progress(trainer)
            self._task = self._progress.add_task("train", total=total, completed=done, info="")
        log.info(
            "training %s from step %d to %s on %s (%d process%s, %s)",
            trainer.run_name,
            trainer.step,
            _target(trainer),
            trainer.dist.device,
            trainer.dist.world_size,
            "es" if trainer.dist.world_size > 1 else "",
            trainer.dist.strategy,
        )

    def on_step_end(self, trainer: Trainer) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=_progress(trainer)[0])

    def on_log(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if "train/loss" in metrics:
            lr = next((v for k, v in metrics.items() if k.startswith("lr/")), None)
            parts = [f"loss {metrics['train/loss']:.4g}"]
            if lr is not None:
                parts.append(f"lr {lr:.3g}")
            if "samples_per_s" in metrics:
                parts.append(f"{metrics['samples_per_s']:.1f} samples/s")
            text = "  ".join(parts)
            if self._progress is not None:
                self._progress.update(self._task, info=text)
            else:
                log.info("step %d/%s  %s", trainer.step, _target(trainer), text)
        else:
            shown = "  ".join(
                f"{k} {v:.4g}" for k, v in _scalars(metrics).items() if not k.startswith(("time", "epoch"))
            )
            log.info("step %d eval: %s", trainer.step, shown)

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        log.info("checkpoint: %s", path)

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_train_end(self, trainer: Trainer) -> None:
        self._stop()
        log.info("finished at step %d%s", trainer.step, f" ({trainer.stop_reason})" if trainer.stop_reason else "")

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self._stop()


class TensorBoardLogger(Callback):
    """Scalars to ``<run>/tensorboard`` (needs the ``librobot-train[tensorboard]`` extra)."""

    main_process_only = True

    def __init__(self, subdir: str = "tensorboard") -> None:
        self.subdir = subdir
        self.writer: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        require("tensorboard", extra="librobot-train[tensorboard]", purpose="TensorBoard logging")
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a crashed run logged after the checkpoint being resumed.
        self.writer = SummaryWriter(
            str(trainer.run_dir / self.subdir), purge_step=trainer.step + 1 if trainer.step else None
        )

    def on_log(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if self.writer is not None:
            for key, value in _scalars(metrics).items():
                if math.isfinite(value):
                    self.writer.add_scalar(key, value, trainer.step)

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        if self.writer is not None:
            self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandbLogger(Callback):
    """Weights & Biases (extra ``librobot-train[wandb]``); the run id is kept in the run folder so
    a resumed run continues the same W&B run."""

    main_process_only = True

    def __init__(self, project: str = "librobot", mode: str | None = None) -> None:
        self.project, self.mode = project, mode
        self.run: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        wandb = require("wandb", extra="librobot-train[wandb]", purpose="Weights & Biases logging")
        id_file = trainer.run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        atomic_write_text(id_file, run_id + "\n")
        self.run = wandb.init(
            project=self.project,
            name=trainer.run_name,
            id=run_id,
            resume="allow",
            dir=str(trainer.run_dir),
            config=trainer.config_dict,
            mode=self.mode,
        )

    def on_log(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log(_scalars(metrics), step=trainer.step)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


class CurvePlotter(Callback):
    """Redraws ``<run>/curves.png`` from metrics.jsonl at every checkpoint and at the end."""

    main_process_only = True
    order = 20

    def __init__(self, filename: str = "curves.png", source: str = "metrics.jsonl") -> None:
        self.filename, self.source = filename, source
        self.last_plot_s = 0.0

    def refresh(self, trainer: Trainer) -> Path | None:
        start = time.perf_counter()
        path = plot_curves(
            read_jsonl(trainer.run_dir / self.source), trainer.run_dir / self.filename, title=trainer.run_name
        )
        self.last_plot_s = time.perf_counter() - start
        return path

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        self.refresh(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        self.refresh(trainer)
