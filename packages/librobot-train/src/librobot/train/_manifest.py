"""Torch-free manifest of this package's components, loaded through the `librobot.plugins`
entry point: each entry maps a registry name (and aliases) to "module:attr" without importing it."""

from __future__ import annotations

_T = "librobot.train"

OPTIMIZERS = [
    ("adamw", f"{_T}.optim:adamw", ["adam-w"], "AdamW (decoupled weight decay)"),
    ("lion", f"{_T}.optim:lion", [], "Lion: sign of interpolated momentum (Chen et al. 2023)"),
    ("sgd", f"{_T}.optim:sgd", [], "SGD with optional momentum"),
]
SCHEDULERS = [
    ("cosine", f"{_T}.schedules:cosine_schedule", ["cosine-warmup"], "linear warmup, cosine decay to min_lr_ratio"),
    ("linear", f"{_T}.schedules:linear_schedule", ["linear-warmup"], "linear warmup, linear decay to min_lr_ratio"),
    ("constant", f"{_T}.schedules:constant_schedule", ["constant-warmup"], "linear warmup, then constant"),
]
LOSSES = [
    ("mse", f"{_T}.losses:MSEActionLoss", ["l2"], "mean squared error over non-padded action steps"),
    ("l1", f"{_T}.losses:L1ActionLoss", ["mae"], "mean absolute error over non-padded action steps"),
    ("huber", f"{_T}.losses:HuberActionLoss", ["smooth-l1"], "Huber loss over non-padded action steps"),
]
CALLBACKS = [
    ("checkpoint", f"{_T}.callbacks.checkpoint:ModelCheckpoint", ["model-checkpoint"], "periodic + best checkpoints"),
    (
        "early-stopping",
        f"{_T}.callbacks.checkpoint:EarlyStopping",
        ["early-stop"],
        "stop when a metric stops improving",
    ),
    ("jsonl", f"{_T}.callbacks.loggers:JSONLLogger", ["metrics-jsonl"], "metrics.jsonl in the run folder"),
    ("console", f"{_T}.callbacks.loggers:ConsoleLogger", ["progress"], "progress bar / log lines"),
    ("lr-monitor", f"{_T}.callbacks.loggers:LRMonitor", [], "learning rate per param group"),
    ("tensorboard", f"{_T}.callbacks.loggers:TensorBoardLogger", ["tb"], "TensorBoard scalars (extra: tensorboard)"),
    ("wandb", f"{_T}.callbacks.loggers:WandbLogger", ["weights-and-biases"], "Weights & Biases (extra: wandb)"),
    ("plot", f"{_T}.callbacks.loggers:CurvePlotter", ["curves"], "curves.png of losses and learning rates"),
    ("export-policy", f"{_T}.evaluation.callbacks:ExportPolicy", [], "save the trained policy (EMA) as <run>/policy"),
    ("closed-loop-eval", f"{_T}.evaluation.callbacks:ClosedLoopEval", ["sim-eval"], "success rates in simulated tasks"),
]
MODELS = [
    (
        "toy-reach-policy",
        f"{_T}.toy_reach:toy_reach_policy",
        [],
        "small image+instruction+state policy (toy-reach config, tests)",
    ),
    (
        "vla",
        f"{_T}.vla:build_vla",
        ["framework"],
        "any registered VLA framework, sized and normalised from the dataset",
    ),
]
DATASETS = [
    ("toy-reach", f"{_T}.toy_reach:toy_reach_dataset", [], "synthetic reach demonstrations (toy-reach config, tests)"),
]


def register() -> None:
    """Add this package's lazy registry entries."""
    from librobot.core.registry import add_category, get_registry

    add_category("train_model")
    for category, entries in (
        ("optimizer", OPTIMIZERS),
        ("scheduler", SCHEDULERS),
        ("loss", LOSSES),
        ("callback", CALLBACKS),
        ("train_model", MODELS),
        ("dataset", DATASETS),
    ):
        registry = get_registry(category)
        for name, target, aliases, doc in entries:
            registry.register_lazy(name, target, aliases=aliases, doc=doc)
