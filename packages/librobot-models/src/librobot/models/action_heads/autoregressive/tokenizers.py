"""Action tokenizers as the autoregressive head sees them: the built-in uniform binning (torch),
and an adapter over any numpy ``ActionTokenizerInterface`` (FAST from librobot-data), created
through the core registry so this package never imports librobot.data."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from librobot.core.errors import ConfigError, MissingExtraError, SpecError, UnknownComponentError
from librobot.core.interfaces import ActionTokenizerInterface
from librobot.core.logging import get_logger
from librobot.core.references import resolve
from librobot.core.registry import get_registry

log = get_logger("models.tokenizers")


class UniformBins:
    """``num_bins`` equal bins over [low, high] per coordinate (RT-2/OpenVLA); values outside are
    clipped. Chunk [B, H, A] ↔ ids [B, H·A], time-major (all A coordinates of step 0 first)."""

    fixed_length = True

    def __init__(self, num_bins: int = 256, low: float = -1.0, high: float = 1.0) -> None:
        self.num_bins, self.low, self.high = int(num_bins), float(low), float(high)

    @property
    def vocab_size(self) -> int:
        return self.num_bins

    def encode(self, actions: Tensor) -> Tensor:
        unit = (actions.clamp(self.low, self.high) - self.low) / (self.high - self.low)
        return (unit * self.num_bins).floor().clamp(0, self.num_bins - 1).long().flatten(1)

    def decode(self, ids: Tensor, horizon: int, action_dim: int) -> Tensor:
        centers = self.low + (ids.float() + 0.5) * (self.high - self.low) / self.num_bins
        return centers.view(-1, horizon, action_dim)


class RegistryTokenizer:
    """A numpy ``ActionTokenizerInterface`` behind the head's torch interface (variable length)."""

    fixed_length = False

    def __init__(self, tokenizer: ActionTokenizerInterface) -> None:
        if not isinstance(tokenizer, ActionTokenizerInterface):
            raise ConfigError(
                f"tokenizer must implement librobot.core.interfaces.ActionTokenizerInterface, got {type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.vocab_size)

    def encode(self, actions: Tensor) -> list[list[int]]:
        lists = self.tokenizer.encode(actions.detach().to(torch.float64).cpu().numpy())
        for seq in lists:
            if any(not 0 <= int(t) < self.vocab_size for t in seq):
                raise SpecError(
                    f"tokenizer produced ids outside [0, {self.vocab_size}); it is inconsistent with its vocab_size"
                )
        return [[int(t) for t in seq] for seq in lists]

    def decode(self, lists: list[list[int]], horizon: int, action_dim: int) -> Tensor:
        out = np.asarray(self.tokenizer.decode(lists, horizon, action_dim), dtype=np.float32)
        return torch.from_numpy(out)


def _registry_name_of(cls: type) -> str:
    """The tokenizer registry name whose target is ``cls``, else "module:Class" (a code reference,
    which a saved policy can be reloaded with only by a caller that trusts it)."""
    target = f"{cls.__module__}:{cls.__qualname__}"
    for entry in get_registry("tokenizer").entries():
        if entry.target == target or entry.obj is cls:
            return entry.name
    log.warning(
        "action tokenizer %s is not registered: a policy saved with it names it as code (%s) and reloads only "
        'with trust_remote_code=True. Register it ("tokenizer" registry, librobot.plugins entry point) to avoid that.',
        cls.__qualname__,
        target,
    )
    return target


def _tokenizer_class(name: str) -> Any:
    try:
        return resolve(name, "tokenizer", key="tokenizer")
    except UnknownComponentError:
        registered = get_registry("tokenizer").list()
        raise MissingExtraError(
            f"no action tokenizer named '{name}' is registered (registry category 'tokenizer'; registered: "
            f"{', '.join(registered) or 'none'}). The FAST tokenizer comes with librobot-data: "
            f"pip install 'librobot-models[fast]'. Or pass tokenizer=<an ActionTokenizerInterface> to the head, "
            f"or use tokenizer='uniform'."
        ) from None


def build_tokenizer(
    name: str, *, num_bins: int, state: dict[str, Any] | None, kwargs: dict[str, Any]
) -> UniformBins | RegistryTokenizer:
    if name == "uniform":
        return UniformBins(num_bins)
    factory = _tokenizer_class(name)
    if state is None:
        return RegistryTokenizer(factory(**kwargs))
    from_dict = getattr(factory, "from_dict", None)  # a class; a factory function gives us its product's class
    return RegistryTokenizer(from_dict(state) if from_dict is not None else type(factory(**kwargs)).from_dict(state))


def describe(tokenizer: ActionTokenizerInterface) -> tuple[str, dict[str, Any]]:
    """(config name, state) that rebuild ``tokenizer``."""
    if not isinstance(tokenizer, ActionTokenizerInterface):
        raise ConfigError(
            f"tokenizer must implement librobot.core.interfaces.ActionTokenizerInterface, got {type(tokenizer).__name__}"
        )
    return _registry_name_of(type(tokenizer)), tokenizer.to_dict()
