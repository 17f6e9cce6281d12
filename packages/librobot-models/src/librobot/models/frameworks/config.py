"""Torch-free config base of the VLA frameworks: a dataclass that validates itself and
round-trips through JSON (unknown keys are errors that suggest the close match)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from librobot.core.errors import ConfigError
from librobot.core.observations import describe_parts, parse_state_parts, state_parts_to_json

C = TypeVar("C", bound="VLAConfig")


@dataclass
class VLAConfig:
    """Fields every framework shares.

    action_dim: A. state_dim: S (0 = no proprioception). horizon: H, the action-chunk length.
    n_obs_steps: T_obs, observation history the framework reads (most use the latest step).
    freeze_vlm: keep the backbone's weights fixed. head: overrides for the action head's config
    (e.g. ``{"num_inference_steps": 5}``). seed: default seed of ``predict_action`` when no
    generator or noise is given, so a saved policy predicts the same chunk after loading.
    cameras: the cameras the policy reads, by name (None: whatever images are given; []: none, a
    state-only policy). Images of other cameras in a camera → image mapping are ignored.
    state_parts: ``[[key, width], ...]`` when the state is the concatenation of several observation
    vectors (``data.state_keys``), in that order; the widths sum to state_dim. Servers, the runtime
    and exports then take the parts as separate keys (librobot.core.observations). None: the state
    is ``observation.state`` as it is.
    """

    action_dim: int = 7
    state_dim: int = 0
    horizon: int = 16
    n_obs_steps: int = 1
    freeze_vlm: bool = False
    head: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    cameras: list[str] | None = None
    state_parts: list[list[Any]] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        name = type(self).__name__
        for key in ("action_dim", "horizon", "n_obs_steps"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name}.{key} must be a positive int, got {value!r}")
        if not isinstance(self.state_dim, int) or self.state_dim < 0:
            raise ConfigError(f"{name}.state_dim must be an int >= 0 (0 = no proprioception), got {self.state_dim!r}")
        if self.cameras is not None and not all(isinstance(c, str) and c for c in self.cameras):
            raise ConfigError(f"{name}.cameras must be a list of camera names (or null), got {self.cameras!r}")
        if self.state_parts is not None:
            parts = parse_state_parts(self.state_parts, where=f"{name}.state_parts")
            if sum(p.width for p in parts) != self.state_dim:
                raise ConfigError(
                    f"{name}.state_parts ({describe_parts(parts)}) add up to {sum(p.width for p in parts)} values, "
                    f"but state_dim is {self.state_dim}; they must describe the whole state"
                )
            self.state_parts = state_parts_to_json(parts)  # plain lists: JSON and equality alike
        if not isinstance(self.head, Mapping):
            raise ConfigError(f"{name}.head must be a mapping of head-config overrides, got {self.head!r}")

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
            raise ConfigError(f"{cls.__name__} has no option {', '.join(hints)}. Options: {', '.join(known)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out.get("state_parts") is None:  # a single-vector state: its config.json stays as before parts existed
            out.pop("state_parts", None)
        return out

    @classmethod
    def resolve(cls: type[C], config: C | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> C:
        if config is None:
            return cls.from_dict(overrides)
        if isinstance(config, Mapping):
            return cls.from_dict({**config, **overrides})
        if not isinstance(config, cls):
            raise ConfigError(f"expected a {cls.__name__} (or a dict of its options), got {type(config).__name__}")
        return cls.from_dict({**config.to_dict(), **overrides})
