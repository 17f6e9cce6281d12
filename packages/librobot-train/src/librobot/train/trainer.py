"""The Trainer: one loop for one process and for ``torchrun`` (DDP or FSDP2).

```python
trainer = Trainer(model, train_dataset, config={"train": {"max_steps": 1000, "batch_size": 32}},
                  val_data=val_dataset, run_dir="runs/exp1", resume="auto")
result = trainer.fit()
```

``model`` is any ``nn.Module`` whose ``forward(batch)`` returns ``{"loss": scalar, **terms}``;
the datasets yield batch-contract dicts (map-style or iterable). Exact resume: a checkpoint holds
everything the next step depends on (weights, optimizer, schedule, scaler, EMA, data position,
callback state, the RNGs of every rank), and nothing the loop does between checkpoints depends on
anything else, so a resumed run repeats the uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from librobot.core.errors import ConfigError
from librobot.core.logging import get_logger
from librobot.core.registry import get_registry
from librobot.train.callbacks import (
    Callback,
    CallbackList,
    ConsoleLogger,
    CurvePlotter,
    JSONLLogger,
    LRMonitor,
    ModelCheckpoint,
    TensorBoardLogger,
    WandbLogger,
)
from librobot.train.checkpointing import (
    CheckpointManager,
    resolve_resume,
    restore_training_checkpoint,
    save_training_checkpoint,
)
from librobot.train.config import RunConfig, duration_seconds, run_config_dict, to_run_config
from librobot.train.distributed import DistContext
from librobot.train.ema import EMA
from librobot.train.optim import build_optimizer
from librobot.train.sampler import DataStream, isolated_rng, mix_seed, seed_all
from librobot.train.step import finite_or_raise, train_step, validation_loss

log = get_logger("train")
_STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    stop_reason: str | None
    train_metrics: dict[str, Any] = field(default_factory=dict)  # the last logged training record
    eval_metrics: dict[str, Any] = field(default_factory=dict)  # the last evaluation
    train_seconds: float = 0.0  # time in training steps over the whole run, resumed parts included
    start_step: int = 0  # the step this process started from (> 0 after a resume)


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        train_data: Any,
        *,
        config: RunConfig | Mapping[str, Any] | None = None,
        val_data: Any = None,
        callbacks: Iterable[Callback] = (),
        run_dir: str | Path | None = None,
        resume: Any = None,
        dist: DistContext | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.config = to_run_config(config)
        self.run_dir = Path(run_dir) if run_dir is not None else self.config.resolved_run_dir
        self.run_name = self.config.name
        # complete (defaults filled in), with the folder actually used: config.yaml and checkpoints
        self.config_dict = run_config_dict(self.config) | {"run_dir": str(self.run_dir)}
        self.dist = dist or DistContext.setup(self.config.distributed, self.config.train.device)
        self.module = model
        self.train_data, self.val_data = train_data, val_data
        self.resume = resume if resume is not None else self.config.resume
        self.max_steps = self.config.train.max_steps  # None: only the time budget ends the run
        max_time = self.config.train.max_time
        self.max_time_s = duration_seconds(max_time) if max_time is not None else None
        self._clock = clock  # times the training steps; tests pass a fake one
        self.step = 0
        self.start_step = 0
        self.train_seconds = 0.0  # in training steps (data included), carried across resumes
        self.stop_reason: str | None = None
        self.batch_checked = False
        self.last_eval_step: int | None = None
        self.last_saved_step: int | None = None
        self.last_checkpoint: Path | None = None
        self.last_train_metrics: dict[str, Any] = {}
        self.last_eval_metrics: dict[str, Any] = {}
        self._user_callbacks = list(callbacks)
        self._checkpoint_request: dict[str, Any] | None = None
        self._stop_request: str | None = None
        self._signal: int | None = None
        self._window = self._empty_window()
        self._ready = False
        self.precision = "fp32"  # train.precision resolved for the device (auto) in setup()

    # ================================================================== setup
    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def param_group_names(self) -> list[str]:
        return [str(g.get("name", f"group{i}")) for i, g in enumerate(self.optimizer.param_groups)]

    def setup(self) -> None:
        """Place, wrap and compile the model; build optimizer, schedule, EMA, data and callbacks;
        resume if asked. ``fit`` calls it; call it yourself to inspect the pieces before training."""
        if self._ready:
            return
        cfg = self.config
        from librobot.models.components.precision import device_precision

        self.precision = device_precision(cfg.train.precision, self.dist.device)
        if self.precision == "bf16" and self.dist.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(
                "train.precision=bf16 but this GPU has no bf16 support; use fp16 (with loss scaling) or fp32"
            )
        self.module.to(self.dist.device)
        if cfg.train.gradient_checkpointing:
            enable = getattr(self.module, "gradient_checkpointing_enable", None)
            if not callable(enable):
                raise ConfigError(
                    f"train.gradient_checkpointing=true, but {type(self.module).__name__} has no gradient_checkpointing_enable() "
                    "method; set it to false, or give the model that method"
                )
            enable()
        wrapped = self.dist.wrap(self.module, cfg.distributed)
        self.ddp = wrapped if wrapped is not self.module else None
        self.forward_model: nn.Module = wrapped
        if cfg.train.compile:
            self.forward_model = torch.compile(wrapped, mode=cfg.train.compile_mode, backend=cfg.train.compile_backend)  # type: ignore[assignment]
        self.optimizer, self.param_plan = build_optimizer(self.module, cfg.optimizer)
        self.trainable_parameters = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.scheduler = get_registry("scheduler").create(
            cfg.scheduler.name,
            self.optimizer,
            total_steps=self.max_steps or 1,  # under a time budget the progress comes from set_progress
            warmup_steps=cfg.scheduler.warmup_steps,
            min_lr_ratio=cfg.scheduler.min_lr_ratio,
        )
        if self.max_time_s is not None and not callable(getattr(self.scheduler, "set_progress", None)):
            raise ConfigError(
                f"train.max_time needs a schedule that can follow the time budget (set_progress); "
                f"'{cfg.scheduler.name}' cannot: use cosine, linear or constant, or drop train.max_time"
            )
        self.scaler = torch.amp.GradScaler(self.dist.device.type) if self.precision == "fp16" else None
        e = cfg.ema
        self.ema = (
            EMA(
                self.module,
                max_decay=e.max_decay,
                min_decay=e.min_decay,
                warmup_power=e.warmup_power,
                inv_gamma=e.inv_gamma,
                start_step=e.start_step,
                update_every=e.update_every,
            )
            if e.enabled
            else None
        )
        self.data = DataStream(
            self.train_data,
            batch_size=cfg.train.batch_size,
            seed=cfg.train.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            shuffle=cfg.train.shuffle,
            num_workers=cfg.train.num_workers,
            pin_memory=self.dist.device.type == "cuda",
        )
        self.callbacks = CallbackList(self._default_callbacks() + self._user_callbacks, is_main=self.is_main)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", keep_last=cfg.checkpoint.keep_last)
        self._resume_or_start()
        self._ready = True

    def _default_callbacks(self) -> list[Callback]:
        cfg, user = self.config, self._user_callbacks
        defaults: list[Callback] = [LRMonitor(), JSONLLogger(), ConsoleLogger(progress=cfg.logging.progress)]
        ck = cfg.checkpoint
        defaults.append(ModelCheckpoint(every_n_steps=ck.every_n_steps, monitor=ck.monitor, mode=ck.mode))
        if cfg.logging.plot:
            defaults.append(CurvePlotter())
        from librobot.core.extras import is_available

        tb = cfg.logging.tensorboard
        if tb is True or (tb == "auto" and is_available("tensorboard")):
            defaults.append(TensorBoardLogger())
        wb = cfg.logging.wandb
        if wb is True or (wb == "auto" and is_available("wandb")):
            defaults.append(WandbLogger(project=cfg.logging.wandb_project, mode=cfg.logging.wandb_mode))
        return [d for d in defaults if not any(type(u) is type(d) for u in user)]

    def _resume_or_start(self) -> None:
        path = resolve_resume(self.resume, self.run_dir)
        if path is None:
            existing = self.checkpoints.step_dirs()
            if existing and not self.resume:
                raise ConfigError(
                    f"{self.run_dir} already holds checkpoints (up to step {existing[-1][0]}); resume with --resume "
                    "(resume=auto), or pick another run folder (run_dir=... / name=...)"
                )
            self.seed_training_rng(offset=0)
        else:
            state = restore_training_checkpoint(self, path)
            self.last_checkpoint = path
            self.last_saved_step = self.start_step = self.step
            if self.is_main:
                log.info("resumed from %s (step %d, epoch %d)", path, state["step"], state["data"]["epoch"])
        if self.is_main:
            from librobot.core.config import save_config

            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config_dict, self.run_dir / "config.yaml")
            self.checkpoints.clean_trash()

    def seed_training_rng(self, offset: int = 0) -> None:
        """Seed the RNGs the training step uses (dropout, noise): one stream per rank."""
        seed_all(mix_seed(self.config.train.seed, self.dist.rank, offset), cuda=True)

    # ================================================================== state for checkpoints
    def full_model_state(self) -> dict[str, torch.Tensor]:
        if self.dist.strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return self.module.state_dict()

    def full_optimizer_state(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True) if self.dist.strategy == "fsdp" else None
        return get_optimizer_state_dict(self.module, self.optimizer, options=options)

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.dist.strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(self.module, state, options=StateDictOptions(full_state_dict=True))
        else:
            self.module.load_state_dict(state, strict=True)

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        # A parameter that never received a gradient (a camera embedding in a state-only run) has no
        # optimizer state; that is not a broken checkpoint, and the optimizer skips it either way.
        saved = state.get("state", {})
        stateless = [k for g in state.get("param_groups", []) for k in g.get("params", []) if k not in saved]
        if stateless and self.is_main:
            log.info(
                "resume: %d parameters have no optimizer state yet (no gradient so far): %s",
                len(stateless),
                ", ".join(map(str, stateless[:5])) + (" ..." if len(stateless) > 5 else ""),
            )
        options = StateDictOptions(full_state_dict=self.dist.strategy == "fsdp", strict=not stateless)
        set_optimizer_state_dict(self.module, self.optimizer, state, options=options)

    def ema_source_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.full_model_state().items()}

    def training_state(self) -> dict[str, Any]:
        w = self._window
        return {
            "step": self.step,
            "data": self.data.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state() if self.ema is not None else None,
            "callbacks": self.callbacks.state_dict(),
            "window": {
                "loss": float(w["loss"]),
                "terms": {k: float(v) for k, v in w["terms"].items()},
                "steps": w["steps"],
                "samples": w["samples"],
                "train_s": w["train_s"],  # so the first window after a resume reports its whole step time
            },
            "last_eval_step": self.last_eval_step,
            "train_seconds": self.train_seconds,
            "world_size": self.dist.world_size,
            "batch_size": self.config.train.batch_size,
            "grad_accum_steps": self.config.train.grad_accum_steps,
            "seed": self.config.train.seed,
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        changed = [
            k
            for k in ("world_size", "batch_size", "grad_accum_steps", "seed")
            if state.get(k) != (self.dist.world_size if k == "world_size" else getattr(self.config.train, k))
        ]
        if changed and self.is_main:
            log.warning(
                "resuming with different %s than the checkpoint: the run will not repeat an uninterrupted one exactly",
                ", ".join(changed),
            )
        self.step = int(state["step"])
        self.data.load_state_dict(state["data"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.callbacks.load_state_dict(state.get("callbacks", {}))
        w = state.get("window") or {}
        self._window = self._empty_window()
        self._window["loss"] += float(w.get("loss", 0.0))
        self._window["terms"] = {
            k: torch.tensor(v, dtype=torch.float64, device=self.dist.device) for k, v in w.get("terms", {}).items()
        }
        self._window["steps"], self._window["samples"] = int(w.get("steps", 0)), int(w.get("samples", 0))
        self._window["train_s"] = float(w.get("train_s", 0.0))
        self.last_eval_step = state.get("last_eval_step")
        self.train_seconds = float(state.get("train_seconds", 0.0))

    # ================================================================== requests from callbacks
    def request_checkpoint(self, best: dict[str, Any] | None = None) -> None:
        """Save a checkpoint once this step's hooks are done (``best``: mark it the best one)."""
        request = self._checkpoint_request or {}
        if best is not None:
            request["best"] = best
        self._checkpoint_request = request

    def request_stop(self, reason: str) -> None:
        self._stop_request = self._stop_request or reason

    # ================================================================== evaluation
    @property
    def has_evaluation(self) -> bool:
        overridden = any(type(c).on_evaluate is not Callback.on_evaluate for c in self.callbacks)
        return self.val_data is not None or overridden

    def evaluate(self) -> dict[str, Any]:
        """Validation loss plus what ``on_evaluate`` callbacks add, with the EMA weights when
        enabled, under RNGs of their own (evaluating never shifts the training randomness)."""
        metrics: dict[str, Any] = {}
        use_ema = self.ema is not None and self.config.ema.use_for_eval
        with isolated_rng(mix_seed(self.config.train.seed, 7), cuda=True):
            swap = self.ema.swapped_in(self.module) if use_ema and self.ema is not None else nullcontext()
            with swap:
                if self.val_data is not None:
                    metrics.update(validation_loss(self))
                self.callbacks.call("on_evaluate", self, metrics)
        metrics = self.dist.broadcast_json(metrics)
        return metrics

    def _run_evaluation(self) -> None:
        metrics = self.evaluate()
        self.last_eval_step = self.step
        self.last_eval_metrics = dict(metrics)
        self.callbacks.call("on_eval_end", self, metrics)
        self.callbacks.call("on_log", self, dict(metrics))

    # ================================================================== the loop
    def _empty_window(self) -> dict[str, Any]:
        device = self.dist.device if hasattr(self, "dist") else torch.device("cpu")
        return {
            "loss": torch.zeros((), dtype=torch.float64, device=device),
            "terms": {},
            "steps": 0,
            "samples": 0,
            "train_s": 0.0,
            "grad_norm": None,
        }

    def _record(self, out: dict[str, Any], seconds: float) -> None:
        w = self._window
        w["train_s"] += seconds
        self.train_seconds += seconds
        w["loss"] += out["loss"]
        for key, value in out["terms"].items():
            w["terms"][key] = w["terms"].get(key, 0.0) + value
        w["steps"] += 1
        w["samples"] += out["samples"]
        w["grad_norm"] = out["grad_norm"]

    def _log_training(self) -> None:
        w = self._window
        keys = sorted(w["terms"])
        packed = torch.stack(
            [w["loss"]]
            + [torch.as_tensor(w["terms"][k], dtype=torch.float64, device=w["loss"].device) for k in keys]
            + [torch.tensor(float(w["samples"]), dtype=torch.float64, device=w["loss"].device)]
        )
        if self.dist.backend == "gloo":
            packed = packed.cpu()
        self.dist.all_reduce(packed)
        values = packed.tolist()
        world, steps = self.dist.world_size, max(1, w["steps"])
        elapsed = max(w["train_s"], 1e-9)  # time in training steps (data included), not in evaluation or saving
        metrics: dict[str, Any] = {
            "train/loss": finite_or_raise(values[0] / world / steps, "the training loss", self.step)
        }
        metrics.update({f"train/{k}": values[i + 1] / world / steps for i, k in enumerate(keys)})
        if w["grad_norm"] is not None:
            metrics["grad_norm"] = float(w["grad_norm"])
        metrics["samples_per_s"] = values[-1] / elapsed
        metrics["step_time_s"] = elapsed / steps
        per_epoch = self.data.batches_per_epoch
        metrics["epoch"] = self.data.epoch + (self.data.batch_in_epoch / per_epoch if per_epoch else 0.0)
        metrics["time"] = time.time()
        self.callbacks.call("on_log", self, metrics)
        self.last_train_metrics = metrics
        self._window = self._empty_window()

    def _save(self) -> None:
        request = self._checkpoint_request or {}
        self._checkpoint_request = None
        path = save_training_checkpoint(self, self.checkpoints, best=request.get("best"))
        self.last_saved_step, self.last_checkpoint = self.step, path
        self.callbacks.call("on_checkpoint", self, path)

    def fit(self) -> TrainResult:
        """Train to ``train.max_steps`` or ``train.max_time`` (or until a stop request); return where things ended."""
        previous_det = torch.are_deterministic_algorithms_enabled()
        handlers = self._install_signal_handlers()
        try:
            if self.config.train.deterministic:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                torch.use_deterministic_algorithms(True)
            self.setup()
            self.callbacks.call("on_train_start", self)
            self._loop()
            self.callbacks.call("on_train_end", self)
        except BaseException as exc:
            if self._ready:
                self.callbacks.call("on_exception", self, exc)
            raise
        finally:
            torch.use_deterministic_algorithms(previous_det)
            self._restore_signal_handlers(handlers)
            if self._ready:
                self.data.close()
        best = self.checkpoints.best()
        return TrainResult(
            self.run_dir,
            self.step,
            self.last_checkpoint,
            best if best and best.is_dir() else None,
            self.stop_reason,
            dict(self.last_train_metrics),
            dict(self.last_eval_metrics),
            self.train_seconds,
            self.start_step,
        )

    def _loop(self) -> None:
        cfg = self.config
        every_eval, log_every = cfg.eval.every_n_steps, cfg.logging.log_every_n_steps
        has_eval = self.has_evaluation
        spent = self._budget_spent()
        while not spent:
            if self.max_time_s is not None:
                self.scheduler.set_progress(self.budget_fraction)
            start = self._clock()
            out = train_step(self)
            self.step += 1
            self._record(out, self._clock() - start)
            self.callbacks.call("on_step_end", self)
            spent = self._budget_spent()
            if self.step % log_every == 0 or spent:
                self._log_training()
            if has_eval and every_eval and self.step % every_eval == 0:
                self._run_evaluation()
            # one collective for both flags, so every rank stops (and saves) at the same step
            signalled, stopping = self.dist.any_of(self._signal is not None, self._stop_request is not None)
            if signalled:
                name = signal.Signals(self._signal).name if self._signal else "a signal on another rank"
                self.request_stop(f"stopped by {name}")
                stopping = True
            # a signal (preemption) always saves; other stops follow checkpoint.save_final
            if self._checkpoint_request is not None or (stopping and (signalled or cfg.checkpoint.save_final)):
                self._save()
            if stopping:
                self.stop_reason = self._stop_request or "stop requested on another rank"
                return
        if self.max_time_s is not None:
            self.scheduler.set_progress(self.budget_fraction)  # the schedule's state at the end of the budget
        if self.max_time_s is not None and self.train_seconds >= self.max_time_s:
            self.stop_reason = f"time budget reached ({self.max_time_s:.0f} s of training at step {self.step})"
            if self.is_main:
                log.info("%s", self.stop_reason)
        if has_eval and cfg.eval.at_end and self.last_eval_step != self.step:
            self._run_evaluation()
        if self._checkpoint_request is not None or (cfg.checkpoint.save_final and self.last_saved_step != self.step):
            self._save()

    @property
    def budget_fraction(self) -> float:
        """How much of the run's budget is spent, in [0, 1]: time under ``max_time``, else steps."""
        if self.max_time_s is not None:
            return min(1.0, self.train_seconds / self.max_time_s)
        return min(1.0, self.step / self.max_steps) if self.max_steps else 1.0

    def _budget_spent(self) -> bool:
        if self.max_time_s is not None and self.dist.world_size > 1:
            # rank 0's clock for every rank: they must stop at the same step (or DDP hangs at the
            # next collective) and follow the same schedule (or their weights drift apart)
            self.train_seconds = float(self.dist.broadcast_json(self.train_seconds))
        over_time = self.max_time_s is not None and self.train_seconds >= self.max_time_s
        return over_time or (self.max_steps is not None and self.step >= self.max_steps)

    # ================================================================== signals
    def _install_signal_handlers(self) -> dict[int, Any]:
        if not self.config.train.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}

        def handler(signum: int, frame: Any) -> None:
            if self._signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C does not wait for the checkpoint
            self._signal = signum
            log.warning("%s received: saving a checkpoint after this step, then stopping", signal.Signals(signum).name)

        for name in _STOP_SIGNALS:
            if hasattr(signal, name):
                sig = getattr(signal, name)
                previous[sig] = signal.signal(sig, handler)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
