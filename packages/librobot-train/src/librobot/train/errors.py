"""Errors raised by the trainer (besides the core ones: ConfigError, CheckpointError…)."""

from __future__ import annotations

from librobot.core.errors import LibroBotError


class TrainingError(LibroBotError, RuntimeError):
    """Training cannot go on: a model broke the output contract, the loss became non-finite…"""
