"""Trainer callbacks: the ``Callback`` ABC and the built-in ones (registered under "callback")."""

from librobot.train.callbacks.base import Callback, CallbackList
from librobot.train.callbacks.checkpoint import EarlyStopping, ModelCheckpoint
from librobot.train.callbacks.loggers import (
    ConsoleLogger,
    CurvePlotter,
    JSONLLogger,
    LRMonitor,
    TensorBoardLogger,
    WandbLogger,
)

__all__ = [
    "Callback",
    "CallbackList",
    "ConsoleLogger",
    "CurvePlotter",
    "EarlyStopping",
    "JSONLLogger",
    "LRMonitor",
    "ModelCheckpoint",
    "TensorBoardLogger",
    "WandbLogger",
]
