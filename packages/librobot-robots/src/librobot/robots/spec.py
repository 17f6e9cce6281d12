"""Robot definitions as plain data: named action/state spaces with units and limits, the control
rate, per-dimension rate limits, the safe command, and cameras.

A ``RobotSpec`` round-trips through a dict, so a custom robot can be described by a YAML file
alone (``RobotSpec.from_yaml`` / ``create_robot("my_robot.yaml")``)::

    name: my_arm
    control_hz: 30
    action:                      # one entry per commanded dimension
      - {name: joint1, low: -1.57, high: 1.57, unit: rad, max_rate: 3.0, safe: hold}
      - {name: gripper, low: 0.0, high: 1.0, unit: fraction, max_rate: 2.0, safe: 0.0}
    state:
      - {name: joint1_pos, low: -1.57, high: 1.57, unit: rad}
    cameras:
      - {name: wrist, height: 96, width: 96}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.batch import ACTION, OBS_STATE, image_key
from librobot.core.errors import ConfigError, SpecError
from librobot.core.specs import BoxSpace, FeatureSpec

HOLD = "hold"  # a safe value meaning "keep the last safe command" (position-controlled joints)


@dataclass(frozen=True)
class CameraSpec:
    """One camera: its name (the ``<cam>`` of ``observation.images.<cam>``) and frame size."""

    name: str
    height: int = 96
    width: int = 96
    channels: int = 3
    fps: float | None = None

    def __post_init__(self) -> None:
        image_key(self.name)  # validates the name (non-empty, no '.')
        if self.height <= 0 or self.width <= 0 or self.channels not in (1, 3):
            raise SpecError(
                f"camera '{self.name}': need positive height/width and 1 or 3 channels, "
                f"got {self.height}x{self.width}x{self.channels}"
            )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "height": self.height, "width": self.width, "channels": self.channels}
        if self.fps is not None:
            out["fps"] = self.fps
        return out


@dataclass(frozen=True)
class RobotSpec:
    """Everything a policy, a safety layer and a dataset need to know about a robot."""

    name: str
    action_space: BoxSpace
    state_space: BoxSpace
    control_hz: float
    max_rate: tuple[float, ...]  # largest allowed change per second of each action dimension
    safe_action: tuple[float | str, ...]  # per action dim: a value, or HOLD
    cameras: tuple[CameraSpec, ...] = ()
    description: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_rate", tuple(float(r) for r in self.max_rate))
        object.__setattr__(self, "safe_action", tuple(self.safe_action))
        object.__setattr__(self, "cameras", tuple(self.cameras))
        n = self.action_space.dim
        if not (isinstance(self.control_hz, (int, float)) and math.isfinite(self.control_hz) and self.control_hz > 0):
            raise SpecError(f"robot '{self.name}': control_hz must be a positive number, got {self.control_hz!r}")
        if len(self.max_rate) != n or len(self.safe_action) != n:
            raise SpecError(
                f"robot '{self.name}': {n} action dims but {len(self.max_rate)} max_rate and "
                f"{len(self.safe_action)} safe_action entries; give one per action dimension"
            )
        for dim, rate in zip(self.action_space.names, self.max_rate):
            if not (math.isfinite(rate) and rate > 0):
                raise SpecError(f"robot '{self.name}': max_rate of '{dim}' must be finite and > 0, got {rate}")
        for dim, lo, hi, safe in zip(
            self.action_space.names, self.action_space.low, self.action_space.high, self.safe_action
        ):
            if safe == HOLD:
                continue
            if not isinstance(safe, (int, float)) or not lo <= safe <= hi:
                raise SpecError(
                    f"robot '{self.name}': safe value of '{dim}' must be '{HOLD}' or a number in [{lo}, {hi}], got {safe!r}"
                )
        if len({c.name for c in self.cameras}) != len(self.cameras):
            raise SpecError(f"robot '{self.name}': duplicate camera names {[c.name for c in self.cameras]}")

    # ------------------------------------------------------------------ conveniences
    @property
    def action_dim(self) -> int:
        return self.action_space.dim

    @property
    def state_dim(self) -> int:
        return self.state_space.dim

    @property
    def period(self) -> float:
        return 1.0 / self.control_hz

    @property
    def max_delta(self) -> np.ndarray:
        """Largest allowed change of each action dimension in one control period."""
        return np.asarray(self.max_rate, dtype=np.float64) / self.control_hz

    def safe_command(self, last: np.ndarray | None) -> np.ndarray:
        """The safe command given the last safe one (HOLD dims keep ``last``, or the range middle)."""
        mid = 0.5 * (self.action_space.low_array + self.action_space.high_array)
        out = np.empty(self.action_dim)
        for i, safe in enumerate(self.safe_action):
            if safe == HOLD:
                out[i] = mid[i] if last is None else last[i]
            else:
                out[i] = float(safe)
        return out

    def normalize_action(self, action: np.ndarray) -> np.ndarray:
        return self.action_space.normalize(action)

    def denormalize_action(self, action: np.ndarray) -> np.ndarray:
        return self.action_space.denormalize(action)

    def normalize_state(self, state: np.ndarray) -> np.ndarray:
        return self.state_space.normalize(state)

    def denormalize_state(self, state: np.ndarray) -> np.ndarray:
        return self.state_space.denormalize(state)

    def features(self) -> dict[str, FeatureSpec]:
        """Batch-contract features of one frame (images as the contract's C, H, W)."""
        out = {
            OBS_STATE: self.state_space.to_feature(OBS_STATE),
            ACTION: self.action_space.to_feature(ACTION),
        }
        for cam in self.cameras:
            key = image_key(cam.name)
            out[key] = FeatureSpec(key, (cam.channels, cam.height, cam.width), dtype="uint8", kind="image")
        return out

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        a, s = self.action_space, self.state_space
        action = [
            {"name": n, "low": lo, "high": hi, "unit": u, "max_rate": r, "safe": sf}
            for n, lo, hi, u, r, sf in zip(
                a.names, a.low, a.high, a.units or ("",) * a.dim, self.max_rate, self.safe_action
            )
        ]
        state = [
            {"name": n, "low": lo, "high": hi, "unit": u}
            for n, lo, hi, u in zip(s.names, s.low, s.high, s.units or ("",) * s.dim)
        ]
        out: dict[str, Any] = {"name": self.name, "control_hz": self.control_hz, "action": action, "state": state}
        if self.cameras:
            out["cameras"] = [c.to_dict() for c in self.cameras]
        if self.description:
            out["description"] = self.description
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "robot spec") -> RobotSpec:
        """Build from the YAML/dict layout in this module's docstring; errors name ``source`` and the key."""
        known = {"name", "control_hz", "action", "state", "cameras", "description", "meta"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{source}: unknown keys {sorted(unknown)}; known keys: {sorted(known)}")
        for key in ("name", "control_hz", "action", "state"):
            if key not in data:
                raise ConfigError(f"{source}: missing required key '{key}' (see librobot.robots.spec for the layout)")
        name = str(data["name"])
        action = _dims(data["action"], f"{source}: action", with_control=True)
        state = _dims(data["state"], f"{source}: state", with_control=False)
        cameras = []
        for i, cam in enumerate(data.get("cameras") or ()):
            if not isinstance(cam, Mapping) or "name" not in cam:
                raise ConfigError(f"{source}: cameras[{i}] must be a mapping with at least 'name'")
            extra = set(cam) - {"name", "height", "width", "channels", "fps"}
            if extra:
                raise ConfigError(f"{source}: cameras[{i}] has unknown keys {sorted(extra)}")
            cameras.append(CameraSpec(**dict(cam)))
        try:
            return cls(
                name=name,
                action_space=BoxSpace(
                    [d["name"] for d in action],
                    [d["low"] for d in action],
                    [d["high"] for d in action],
                    [d.get("unit", "") for d in action],
                ),
                state_space=BoxSpace(
                    [d["name"] for d in state],
                    [d["low"] for d in state],
                    [d["high"] for d in state],
                    [d.get("unit", "") for d in state],
                ),
                control_hz=float(data["control_hz"]),
                max_rate=[d["max_rate"] for d in action],
                safe_action=[d.get("safe", HOLD) for d in action],
                cameras=cameras,
                description=str(data.get("description", "")),
                meta=dict(data.get("meta") or {}),
            )
        except SpecError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> RobotSpec:
        """Load a robot definition from a YAML file (``defaults:`` composition and overrides work)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"robot file '{path}' does not exist; pass the path of a YAML robot definition")
        from omegaconf import OmegaConf

        from librobot.core.config import load_config

        data = OmegaConf.to_container(load_config(path, overrides, load_plugins=False), resolve=True)
        if not isinstance(data, dict):
            raise ConfigError(f"robot file '{path}': expected a mapping at the top level")
        return cls.from_dict(data, source=f"robot file '{path}'")


def _dims(items: Any, where: str, *, with_control: bool) -> list[dict[str, Any]]:
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)) or not items:
        raise ConfigError(f"{where}: expected a non-empty list of dimensions like {{name: j1, low: -1, high: 1}}")
    allowed = {"name", "low", "high", "unit"} | ({"max_rate", "safe"} if with_control else set())
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}[{i}]: expected a mapping, got {type(item).__name__}")
        extra = set(item) - allowed
        if extra:
            raise ConfigError(
                f"{where}[{i}] ('{item.get('name', '?')}'): unknown keys {sorted(extra)}; allowed: {sorted(allowed)}"
            )
        required = ("name", "low", "high") + (("max_rate",) if with_control else ())
        missing = [k for k in required if k not in item]
        if missing:
            raise ConfigError(f"{where}[{i}] ('{item.get('name', '?')}'): missing {missing}")
        for k in ("low", "high", "max_rate"):
            if k in item and not isinstance(item[k], (int, float)):
                raise ConfigError(f"{where}[{i}] ('{item['name']}'): '{k}' must be a number, got {item[k]!r}")
        out.append(dict(item))
    return out


def dims_to_space(dims: Sequence[tuple[str, float, float, str]]) -> BoxSpace:
    """A BoxSpace from (name, low, high, unit) rows: how the built-in robots list their dimensions."""
    return BoxSpace([d[0] for d in dims], [d[1] for d in dims], [d[2] for d in dims], [d[3] for d in dims])
