"""Errors raised by the trainer (besides the core ones: ConfigError, CheckpointError…)."""

from __future__ import annotations

from librobot.core.errors import CheckpointError, LibroBotError


class TrainingError(LibroBotError, RuntimeError):
    """Training cannot go on: a model broke the output contract, the loss became non-finite…"""


class NoResumableCheckpointError(CheckpointError):
    """Resuming was asked for and the run has checkpoints, but none of them verifies."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint verifies but does not fit the run resuming it: another model's weights, or a
    trainer state this trainer did not write."""
