"""Torch-free config base for action heads: dataclasses that validate themselves, round-trip
through JSON-able dicts (unknown keys are errors with close matches) and build their head."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from librobot.core.errors import ConfigError

C = TypeVar("C", bound="HeadConfig")

POOLINGS = ("mean", "attention")


def choice(owner: str, field: str, value: Any, options: tuple[Any, ...]) -> None:
    if value not in options:
        close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{owner}.{field}={value!r} is not one of {', '.join(map(repr, options))}{hint}")


def positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{owner}.{name} must be > 0, got {value!r}")


@dataclass
class HeadConfig:
    """Fields every head shares.

    action_dim: A. horizon: H, the chunk length. cond_dim: D, the width of the conditioning
    (vector [B, D] or tokens [B, L, D]). cond_pooling: how heads that need one vector summarise
    token conditioning: "mean" (masked mean) or "attention" (a learned query attends to the tokens).
    """

    action_dim: int = 7
    horizon: int = 16
    cond_dim: int = 256
    cond_pooling: str = "mean"

    # "module:Class" of the head this config builds; set by each subclass.
    head_target: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        name = type(self).__name__
        for field in ("action_dim", "horizon", "cond_dim"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name}.{field} must be a positive int, got {value!r}")
        choice(name, "cond_pooling", self.cond_pooling, POOLINGS)

    # ------------------------------------------------------------------ dict round trip
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        known = cls.field_names()
        unknown = [k for k in data if k not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise ConfigError(f"{cls.__name__} has no field {', '.join(hints)}. Fields: {', '.join(known)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self: C, **changes: Any) -> C:
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def resolve(cls: type[C], config: C | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> C:
        """The config a head is built from: ``config`` (instance or dict) updated with ``overrides``."""
        if config is None:
            return cls.from_dict(overrides)
        if isinstance(config, Mapping):
            return cls.from_dict({**config, **overrides})
        if not isinstance(config, cls):
            raise ConfigError(f"expected a {cls.__name__} (or a dict of its fields), got {type(config).__name__}")
        return config.replace(**overrides) if overrides else config

    def build(self) -> Any:
        """The head this config describes (imports torch)."""
        module, _, attr = self.head_target.partition(":")
        return getattr(importlib.import_module(module), attr)(self)


@dataclass
class DenoiserConfig(HeadConfig):
    """The DiT-style chunk denoiser shared by diffusion and flow-matching heads.

    hidden_dim/depth/num_heads/mlp: the transformer over the H action tokens. cross_attention:
    each block also attends to the conditioning tokens (besides adaLN on the pooled conditioning).
    """

    hidden_dim: int = 128
    depth: int = 3
    num_heads: int = 4
    mlp: str = "gelu"
    cross_attention: bool = True
    dropout: float = 0.0

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        positive(name, hidden_dim=self.hidden_dim, depth=self.depth, num_heads=self.num_heads)
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"{name}.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        choice(name, "mlp", self.mlp, ("gelu", "gelu_tanh", "relu", "silu", "swiglu", "geglu"))
