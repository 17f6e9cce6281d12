"""Shared helpers for the trainer tests: tiny configs of the toy-reach policy and data, file readers."""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from librobot.train.callbacks import Callback
from librobot.train.metrics import read_jsonl


def tiny_config(run_dir: Path, **sections: Any) -> dict[str, Any]:
    """A small, fast config (toy-reach policy without padding noise unless asked), merged with ``sections``."""
    cfg: dict[str, Any] = {
        "name": "t",
        "run_dir": str(run_dir),
        "model": {"factory": "toy-reach-policy", "hidden_dim": 32, "depth": 1},
        "data": {"factory": "toy-reach", "num_samples": 256, "horizon": 4, "image_size": 8},
        "train": {"max_steps": 20, "batch_size": 16, "seed": 0, "max_grad_norm": None},
        "optimizer": {"name": "adamw", "lr": 1e-3},
        "scheduler": {"name": "constant"},
        "checkpoint": {"every_n_steps": 0, "keep_last": 2, "monitor": None},
        "logging": {"log_every_n_steps": 5, "tensorboard": False, "plot": False, "progress": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **copy.deepcopy(value)}
        else:
            cfg[key] = copy.deepcopy(value)
    return cfg


def final_tensors(run_dir: Path, name: str = "model") -> dict:
    from librobot.train.checkpointing import CheckpointManager

    latest = CheckpointManager(Path(run_dir) / "checkpoints").latest()
    assert latest is not None, f"no checkpoint in {run_dir}"
    return load_file(str(latest / f"{name}.safetensors"))


def train_losses(run_dir):
    return [(r["step"], r["train/loss"]) for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]


class SendSignalAt(Callback):
    def __init__(self, step):
        self.at = step

    def on_step_end(self, trainer):
        if trainer.step == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
