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


DENOISERS = ("dit", "unet")


@dataclass
class DenoiserConfig(HeadConfig):
    """The chunk denoiser shared by diffusion and flow-matching heads.

    denoiser: "dit" (a transformer over the H action tokens, the default) or "unet" (Diffusion
    Policy's FiLM-conditioned 1-D temporal U-Net, Chi et al. 2023; ``action_heads/unet1d.py``).

    DiT fields (ignored by the U-Net): hidden_dim/depth/num_heads/mlp: the transformer over the
    H action tokens. cross_attention: each block also attends to the conditioning tokens (besides
    adaLN on the pooled conditioning). dropout: inside the transformer.

    U-Net fields (ignored by the DiT): unet_down_dims: channels per resolution level; the chunk is
    halved in time len - 1 times, so horizon must be divisible by 2 ** (len - 1). The defaults are
    laptop-sized: Diffusion Policy's paper and LeRobot use (512, 1024, 2048) (251.5 M parameters
    for PushT). unet_kernel_size: odd temporal kernel of every conv block (DP: 5). unet_groups:
    GroupNorm groups, dividing every down dim (DP: 8). unet_step_embed_dim: width of the
    diffusion-step embedding, even (DP: 128). unet_film_scale: FiLM applies a per-channel scale and
    bias (LeRobot's default); False: bias only. The U-Net conditions on the pooled conditioning
    only (as DP conditions on its flattened observation features), not on tokens.
    """

    hidden_dim: int = 128
    depth: int = 3
    num_heads: int = 4
    mlp: str = "gelu"
    cross_attention: bool = True
    dropout: float = 0.0
    # appended after the DiT fields so their positions stay as they were
    denoiser: str = "dit"
    unet_down_dims: tuple[int, ...] = (64, 128, 256)
    unet_kernel_size: int = 5
    unet_groups: int = 8
    unet_step_embed_dim: int = 128
    unet_film_scale: bool = True

    def __post_init__(self) -> None:
        # JSON has no tuples: a config read back from a dict carries a list; keep one canonical form
        # so round-tripped configs compare equal
        if isinstance(self.unet_down_dims, list):
            self.unet_down_dims = tuple(self.unet_down_dims)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        choice(name, "denoiser", self.denoiser, DENOISERS)
        positive(name, hidden_dim=self.hidden_dim, depth=self.depth, num_heads=self.num_heads)
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"{name}.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        choice(name, "mlp", self.mlp, ("gelu", "gelu_tanh", "relu", "silu", "swiglu", "geglu"))
        if self.denoiser == "unet":
            self._validate_unet(name)

    def _validate_unet(self, name: str) -> None:
        dims = self.unet_down_dims
        if (
            not isinstance(dims, tuple)
            or not dims
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)
        ):
            raise ConfigError(f"{name}.unet_down_dims must be a non-empty sequence of positive ints, got {dims!r}")
        for field in ("unet_kernel_size", "unet_groups", "unet_step_embed_dim"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name}.{field} must be a positive int, got {value!r}")
        if self.unet_kernel_size % 2 == 0:
            raise ConfigError(
                f"{name}.unet_kernel_size must be odd so 'same' padding keeps the horizon, got {self.unet_kernel_size}"
            )
        bad = [d for d in dims if d % self.unet_groups]
        if bad:
            raise ConfigError(
                f"{name}.unet_down_dims {list(dims)}: every entry must be divisible by unet_groups "
                f"({self.unet_groups}) for GroupNorm; {bad} are not"
            )
        if self.unet_step_embed_dim % 2 or self.unet_step_embed_dim < 4:
            raise ConfigError(
                f"{name}.unet_step_embed_dim must be even and >= 4 (sine and cosine halves), "
                f"got {self.unet_step_embed_dim}"
            )
        factor = 2 ** (len(dims) - 1)
        if self.horizon % factor:
            lower, upper = self.horizon // factor * factor, (self.horizon // factor + 1) * factor
            options = f"{lower} or {upper}" if lower else f"{upper}"
            raise ConfigError(
                f"{name}.horizon ({self.horizon}) must be divisible by 2 ** (len(unet_down_dims) - 1) = {factor}: "
                f"the U-Net halves the chunk {len(dims) - 1} times for unet_down_dims {list(dims)}; "
                f"use horizon {options}, or fewer down dims"
            )
