"""The training config schema (dataclasses, torch-free) and its loader.

A run config has one section per concern. ``model`` and ``data`` are opaque mappings handed to the
factories they name (see ``librobot.train.factories``); every other section is checked here, so a
typo fails before anything is built, with the key and the file that set it named.

```yaml
name: my-run
model:   {factory: toy-reach-policy, hidden_dim: 128}      # "train_model" registry (or module:attr)
data:    {factory: toy-reach, num_samples: 4096,         # "dataset" registry (or module:attr)
          val: {seed: 1, num_samples: 512}}             # overrides for the validation split
train:   {max_steps: 2000, batch_size: 64, precision: bf16}
optimizer: {name: adamw, lr: 3.0e-4, param_groups: [{name: vision, match: [vision], lr: 1.0e-4}]}
scheduler: {name: cosine, warmup_steps: 100}
```
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from librobot.core.errors import ConfigError

BUILTIN_CONFIGS = ("toy-reach",)


@dataclass
class TrainSection:
    max_steps: int | None = 1000  # optimizer steps (null: no step limit; needs max_time)
    # a wall-clock budget for the time spent in training steps ("25m", "1h30m", "90s" or seconds):
    # the run ends at max_time or max_steps, whichever comes first, and schedules follow the
    # fraction of max_time used, so methods can be compared at equal compute
    max_time: str | float | None = None
    batch_size: int = 32  # per process and per micro-batch
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0  # null: no clipping
    # autocast dtype of the forward pass; auto: bf16 where the CPU/GPU runs it natively (AMX or
    # AVX512-BF16 CPUs, Ampere+ GPUs), else fp32 (librobot.core.hardware)
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    seed: int = 0
    deterministic: bool = False  # torch deterministic algorithms (bitwise-repeatable, slower on GPU)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0
    shuffle: bool = True
    gradient_checkpointing: bool = False
    compile: bool = False
    compile_mode: str | None = None
    compile_backend: str = "inductor"
    handle_signals: bool = True  # SIGTERM/SIGINT/SIGUSR1: checkpoint at the next step, then stop


@dataclass
class ParamGroupSection:
    name: str
    match: list[str]  # parameter-name globs; a plain name matches a module prefix ("vlm" → vlm.*)
    lr: float | None = None
    weight_decay: float | None = None


@dataclass
class OptimizerSection:
    name: str = "adamw"  # "optimizer" registry
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] | None = None  # null: the optimizer's own default
    eps: float | None = None
    param_groups: list[ParamGroupSection] = field(default_factory=list)
    no_decay: list[str] = field(default_factory=lambda: ["*pos_embed*", "*position_embed*", "*cls_token*"])
    no_decay_embeddings: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra optimizer arguments


@dataclass
class SchedulerSection:
    name: str = "cosine"  # "scheduler" registry: cosine | linear | constant
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0


@dataclass
class EMASection:
    enabled: bool = False
    max_decay: float = 0.999
    min_decay: float = 0.0
    warmup_power: float = 0.75  # decay = 1 - (1 + n / inv_gamma) ** -power; <= 0: always max_decay
    inv_gamma: float = 1.0
    start_step: int = 0  # copy the weights (decay 0) until this step
    update_every: int = 1
    use_for_eval: bool = True  # evaluate (and export) the EMA weights


@dataclass
class CheckpointSection:
    every_n_steps: int = 500  # 0: only the final (and best) checkpoints
    keep_last: int = 3
    monitor: str | None = "val/loss"  # metric that picks the best checkpoint; null: no best
    mode: Literal["min", "max"] = "min"
    save_final: bool = True


@dataclass
class EvalSection:
    every_n_steps: int = 0  # 0: evaluate only at the end
    max_batches: int | None = None
    batch_size: int | None = None  # default: train.batch_size
    at_end: bool = True


@dataclass
class LoggingSection:
    log_every_n_steps: int = 10
    level: str = "INFO"
    progress: bool | None = None  # null: on a terminal unless LIBROBOT_PROGRESS=0
    tensorboard: bool | Literal["auto"] = "auto"  # auto: when the tensorboard package is installed
    wandb: bool | Literal["auto"] = False  # auto: when wandb is installed
    wandb_project: str = "librobot"
    wandb_mode: str | None = None  # online | offline | disabled (default: wandb's own)
    plot: bool = True


@dataclass
class DistributedSection:
    strategy: Literal["auto", "none", "ddp", "fsdp"] = "auto"  # auto: ddp when WORLD_SIZE > 1
    backend: str | None = None  # default: nccl on CUDA, gloo on CPU
    find_unused_parameters: bool = False
    fsdp_shard: list[str] = field(default_factory=list)  # module class names / name globs sharded on their own
    fsdp_reshard_after_forward: bool = True
    timeout_s: float = 1800.0


@dataclass
class RunConfig:
    name: str = "run"
    run_dir: str | None = None  # default: runs/<name>
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    train: TrainSection = field(default_factory=TrainSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    ema: EMASection = field(default_factory=EMASection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    eval: EvalSection = field(default_factory=EvalSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # [{name: early-stopping, patience: 5}]
    resume: str | bool | None = None
    plugins: list[str] = field(default_factory=list)

    @property
    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name


# ------------------------------------------------------------------------------------ value checks
_DURATION = re.compile(r"(\d+(?:\.\d*)?)\s*(h|m|s)")


def duration_seconds(value: str | float | int) -> float:
    """``"25m"``, ``"1h30m"``, ``"90s"``, ``"1.5h"`` or a number of seconds → seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"cannot read {value!r} as a duration; write e.g. 25m, 1h30m, 90s or a number of seconds")
    return sum(float(n) * {"h": 3600.0, "m": 60.0, "s": 1.0}[u] for n, u in parts)


def _positive(errors: list[str], key: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        errors.append(f"key '{key}': must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def check_values(cfg: RunConfig) -> RunConfig:
    """Range checks the type schema cannot express; all problems are reported together."""
    errors: list[str] = []
    t = cfg.train
    _positive(errors, "train.max_steps", t.max_steps)
    if t.max_steps is None and t.max_time is None:
        errors.append("key 'train.max_steps': null (no step limit) needs a time budget: set train.max_time (e.g. 25m)")
    if t.max_time is not None:
        try:
            _positive(errors, "train.max_time", duration_seconds(t.max_time))
        except ConfigError as exc:
            errors.append(f"key 'train.max_time': {exc}")
    _positive(errors, "train.batch_size", t.batch_size)
    _positive(errors, "train.grad_accum_steps", t.grad_accum_steps)
    _positive(errors, "train.max_grad_norm", t.max_grad_norm)
    _positive(errors, "train.num_workers", t.num_workers, allow_zero=True)
    _positive(errors, "optimizer.lr", cfg.optimizer.lr)
    _positive(errors, "optimizer.weight_decay", cfg.optimizer.weight_decay, allow_zero=True)
    if cfg.optimizer.betas is not None and (
        len(cfg.optimizer.betas) != 2 or not all(0 <= b < 1 for b in cfg.optimizer.betas)
    ):
        errors.append(f"key 'optimizer.betas': expected two numbers in [0, 1), got {cfg.optimizer.betas}")
    for i, group in enumerate(cfg.optimizer.param_groups):
        if not group.match:
            errors.append(f"key 'optimizer.param_groups.{i}.match': list at least one parameter-name pattern")
        _positive(errors, f"optimizer.param_groups.{i}.lr", group.lr, allow_zero=True)
        _positive(errors, f"optimizer.param_groups.{i}.weight_decay", group.weight_decay, allow_zero=True)
    names = [g.name for g in cfg.optimizer.param_groups]
    if len(set(names)) != len(names) or "default" in names:
        errors.append(f"key 'optimizer.param_groups': group names must be unique and not 'default', got {names}")
    _positive(errors, "scheduler.warmup_steps", cfg.scheduler.warmup_steps, allow_zero=True)
    if not 0 <= cfg.scheduler.min_lr_ratio <= 1:
        errors.append(f"key 'scheduler.min_lr_ratio': must be in [0, 1], got {cfg.scheduler.min_lr_ratio}")
    e = cfg.ema
    if not 0 <= e.min_decay <= e.max_decay < 1:
        errors.append(
            f"keys 'ema.min_decay'/'ema.max_decay': need 0 <= min_decay <= max_decay < 1, got {e.min_decay}, {e.max_decay}"
        )
    _positive(errors, "ema.inv_gamma", e.inv_gamma)
    _positive(errors, "ema.update_every", e.update_every)
    _positive(errors, "ema.start_step", e.start_step, allow_zero=True)
    _positive(errors, "checkpoint.every_n_steps", cfg.checkpoint.every_n_steps, allow_zero=True)
    _positive(errors, "checkpoint.keep_last", cfg.checkpoint.keep_last)
    _positive(errors, "eval.every_n_steps", cfg.eval.every_n_steps, allow_zero=True)
    _positive(errors, "eval.max_batches", cfg.eval.max_batches)
    _positive(errors, "eval.batch_size", cfg.eval.batch_size)
    _positive(errors, "logging.log_every_n_steps", cfg.logging.log_every_n_steps)
    for i, entry in enumerate(cfg.callbacks):
        if not isinstance(entry.get("name"), str):
            errors.append(
                f"key 'callbacks.{i}': each callback needs a 'name' (a 'callback' registry entry), got {entry}"
            )
    if errors:
        raise ConfigError(
            f"{len(errors)} invalid training setting{'s' if len(errors) > 1 else ''}:\n  " + "\n  ".join(errors)
        )
    return cfg


def to_run_config(cfg: Any) -> RunConfig:
    """A ``RunConfig`` from a RunConfig, an OmegaConf config or a plain mapping (validated)."""
    from librobot.core.config import validate_config

    if isinstance(cfg, RunConfig):
        return check_values(cfg)
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, Mapping) and type(cfg).__name__ != "DictConfig":
        raise ConfigError(f"a training config must be a mapping or RunConfig, got {type(cfg).__name__}")
    return check_values(validate_config(cfg, RunConfig))


def run_config_dict(cfg: RunConfig) -> dict[str, Any]:
    """JSON/YAML-able form of a RunConfig (what config.yaml and checkpoints record)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    result: dict[str, Any] = plain(dataclasses.asdict(cfg))
    return result


def builtin_config_path(name: str) -> Path:
    """The YAML file of a built-in config (``toy-reach``)."""
    if name not in BUILTIN_CONFIGS:
        raise ConfigError(f"'{name}' is neither a config file nor a built-in config ({', '.join(BUILTIN_CONFIGS)})")
    with resources.as_file(resources.files("librobot.train") / "configs" / f"{name}.yaml") as path:
        return Path(path)


def load_run_config(path_or_name: str | Path, overrides: Sequence[str] = ()) -> tuple[RunConfig, Any]:
    """Load a YAML config (or a built-in one by name) with ``key=value`` overrides.

    Returns the validated RunConfig and the OmegaConf config it came from (for config.yaml).
    """
    from librobot.core.config import load_config

    path = Path(path_or_name)
    if not path.is_file():
        if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
            raise ConfigError(f"config file {path} does not exist (built-in configs: {', '.join(BUILTIN_CONFIGS)})")
        path = builtin_config_path(str(path_or_name))
    cfg = load_config(path, overrides=_schema_overrides(path, overrides))
    return to_run_config(cfg), cfg


def _schema_paths(schema: type = RunConfig, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        paths.add(key)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            paths |= _schema_paths(type(default), key + ".")
    return paths


def _schema_overrides(path: Path, overrides: Sequence[str]) -> list[str]:
    """``key=value`` for a setting the schema has but the file omits becomes ``+key=value``, so
    every documented setting can be overridden without the ``+`` (typos still fail)."""
    from omegaconf import OmegaConf

    from librobot.core.config import load_config

    overrides = list(overrides)
    candidates = [
        o for o in overrides if "=" in o and not o.startswith(("+", "~")) and o.split("=", 1)[0] in _schema_paths()
    ]
    if not candidates:
        return overrides
    base = load_config(path)
    missing = object()
    return [
        "+" + o if o in candidates and OmegaConf.select(base, o.split("=", 1)[0], default=missing) is missing else o
        for o in overrides
    ]
