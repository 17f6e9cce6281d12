"""Shared encoder plumbing: ``output_dim``, the constructor arguments as a JSON-able ``config``,
and input checks that name the expected layout."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from librobot.core.errors import SpecError
from librobot.core.interfaces import EncoderInterface
from librobot.models.components.capture import exporting


class EncoderBase(nn.Module, EncoderInterface):
    """Subclasses call ``super().__init__()`` then ``self._record(locals())`` to keep their config."""

    _output_dim: int
    _config: dict[str, Any]

    def _record(self, arguments: dict[str, Any]) -> None:
        params = inspect.signature(type(self).__init__).parameters
        self._config = {k: arguments[k] for k in params if k != "self" and k in arguments}

    @property
    def output_dim(self) -> int:
        return self._output_dim

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments: ``type(enc)(**enc.config)`` rebuilds the architecture."""
        return dict(self._config)

    @staticmethod
    def check(x: Tensor, name: str, layouts: dict[int, str], last_dim: int | None = None) -> None:
        """Raise SpecError unless x has one of the ranks in ``layouts`` (rank → layout text),
        the given last dim, and only finite values."""
        if not isinstance(x, Tensor):
            raise SpecError(f"{name}: expected a tensor, got {type(x).__name__}")
        if x.dim() not in layouts:
            wanted = " or ".join(layouts.values())
            raise SpecError(f"{name}: expected {wanted}, got shape {list(x.shape)}")
        if last_dim is not None and x.shape[-1] != last_dim:
            raise SpecError(f"{name}: expected last dim {last_dim} ({layouts[x.dim()]}), got shape {list(x.shape)}")
        if x.is_floating_point() and not exporting() and not bool(torch.isfinite(x).all()):
            raise SpecError(f"{name}: contains NaN or inf")

    @staticmethod
    def check_mask(mask: Tensor | None, shape: tuple[int, ...], name: str = "mask") -> None:
        if mask is None:
            return
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(shape):
            raise SpecError(f"{name}: expected bool {list(shape)} (True = valid), got {mask.dtype} {list(mask.shape)}")
