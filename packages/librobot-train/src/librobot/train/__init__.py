"""LibroBot VLA training: one trainer from a laptop to many GPUs, exact resume, closed-loop evaluation, the demo.

Importing the package is cheap; ``Trainer`` and friends (and torch) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Trainer": "librobot.train.trainer",
    "TrainResult": "librobot.train.trainer",
    "RunConfig": "librobot.train.config",
    "load_run_config": "librobot.train.config",
    "train_from_config": "librobot.train.run",
    "Callback": "librobot.train.callbacks.base",
    "EMA": "librobot.train.ema",
    "Lion": "librobot.train.optim",
    "build_param_groups": "librobot.train.optim",
    "lr_factor": "librobot.train.schedules",
    "ResumableSampler": "librobot.train.sampler",
    "CheckpointManager": "librobot.train.checkpointing",
    "load_inference_weights": "librobot.train.checkpointing",
    "build_model": "librobot.train.factories",
    "build_datasets": "librobot.train.factories",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'librobot.train' has no attribute '{name}'")
