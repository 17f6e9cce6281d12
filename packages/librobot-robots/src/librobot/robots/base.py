"""A robot = a ``RobotSpec`` + a hardware backend (a driver) + cameras, behind ``RobotInterface``.

The backend does the talking (Feetech serial bus, CAN bus…); this class checks every state it
reads and every command it sends against the spec, so a bad driver or caller fails loudly instead
of moving the robot somewhere its limits forbid. Clamping and rate limiting are the safety layer's
job (``librobot.robots.safety``): ``send_action`` refuses, it never silently fixes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from librobot.core.batch import OBS_STATE, image_key
from librobot.core.errors import ConfigError, SpecError
from librobot.core.interfaces import RobotInterface
from librobot.core.specs import BoxSpace
from librobot.robots.spec import CameraSpec, RobotSpec

# Commands within this much of a limit count as inside it (float round-off from normalisation).
LIMIT_ATOL = 1e-9


@runtime_checkable
class RobotBackend(Protocol):
    """What a driver provides to ``Robot``: connect, read the state vector, write a command."""

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def read_state(self) -> np.ndarray: ...

    def write_action(self, action: np.ndarray) -> None: ...


@runtime_checkable
class Camera(Protocol):
    """A frame source: ``read()`` returns uint8 [H, W, C]."""

    name: str
    height: int
    width: int

    def connect(self) -> None: ...

    def read(self) -> np.ndarray: ...

    def disconnect(self) -> None: ...


class Robot(RobotInterface):
    """A robot described by ``spec``; ``backend`` talks to the hardware, ``cameras`` give images."""

    def __init__(
        self, spec: RobotSpec, backend: RobotBackend | None = None, cameras: Mapping[str, Camera] | None = None
    ) -> None:
        if not isinstance(spec, RobotSpec):
            raise ConfigError(f"Robot needs a RobotSpec, got {type(spec).__name__}")
        cameras = dict(cameras or {})
        if cameras:  # the spec lists the cameras actually attached
            cams = tuple(CameraSpec(n, int(c.height), int(c.width)) for n, c in cameras.items())
            spec = replace(spec, cameras=cams)
        self.spec = spec
        self.name = spec.name
        self.backend = backend
        self._cameras = cameras
        self._connected = False
        self._last_command: np.ndarray | None = None

    # ------------------------------------------------------------------ RobotInterface
    @property
    def action_space(self) -> BoxSpace:
        return self.spec.action_space

    @property
    def state_space(self) -> BoxSpace:
        return self.spec.state_space

    @property
    def control_hz(self) -> float:
        return self.spec.control_hz

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.spec.cameras)

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        if self.backend is None:
            raise ConfigError(
                f"robot '{self.name}' has no hardware backend, so there is nothing to connect to. "
                f"Pass the connection (e.g. port=... for SO-100, channel=... for the wheel loader) or "
                f"backend=..., or use a simulated environment (`librobot sim list`)."
            )
        self.backend.connect()
        try:
            for cam in self._cameras.values():
                cam.connect()
        except Exception:
            self.backend.disconnect()
            raise
        self._connected = True

    def disconnect(self) -> None:
        if not self._connected:
            return
        for cam in self._cameras.values():
            cam.disconnect()
        if self.backend is not None:
            self.backend.disconnect()
        self._connected = False

    def __enter__(self) -> Robot:
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()

    def _require_connected(self, what: str) -> None:
        if not self._connected or self.backend is None:
            raise ConfigError(f"robot '{self.name}': call connect() before {what}")

    def get_observation(self) -> dict[str, np.ndarray]:
        """``observation.state`` (float32 [S]) and ``observation.images.<cam>`` (uint8 [H, W, C])."""
        self._require_connected("get_observation()")
        assert self.backend is not None
        state = np.asarray(self.backend.read_state(), dtype=np.float64)
        if state.shape != (self.spec.state_dim,):
            raise SpecError(
                f"robot '{self.name}': driver returned a state of shape {state.shape}, expected ({self.spec.state_dim},)"
            )
        if not np.isfinite(state).all():
            bad = [self.state_space.names[i] for i in np.flatnonzero(~np.isfinite(state))]
            raise SpecError(f"robot '{self.name}': driver returned non-finite state values for {bad}")
        obs = {OBS_STATE: state.astype(np.float32)}
        for name, cam in self._cameras.items():
            obs[image_key(name)] = cam.read()
        return obs

    def check_action(self, action: np.ndarray) -> np.ndarray:
        """The action as float64 [A] if it is finite and inside the limits; SpecError otherwise."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.spec.action_dim,):
            raise SpecError(
                f"robot '{self.name}': expected an action of shape ({self.spec.action_dim},) "
                f"({', '.join(self.action_space.names)}), got {a.shape}"
            )
        if not np.isfinite(a).all():
            raise SpecError(f"robot '{self.name}': action contains NaN or inf; send it through the SafetyLayer")
        lo, hi = self.action_space.low_array, self.action_space.high_array
        out = (a < lo - LIMIT_ATOL) | (a > hi + LIMIT_ATOL)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise SpecError(
                f"robot '{self.name}': action '{self.action_space.names[i]}'={a[i]:.6g} is outside "
                f"[{lo[i]:.6g}, {hi[i]:.6g}]; clamp it with the SafetyLayer before sending"
            )
        return np.clip(a, lo, hi)

    def send_action(self, action: np.ndarray) -> None:
        self._require_connected("send_action()")
        assert self.backend is not None
        a = self.check_action(action)
        self.backend.write_action(a)
        self._last_command = a

    def safe_action(self) -> np.ndarray:
        return self.spec.safe_command(self._last_command)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}('{self.name}', action_dim={self.spec.action_dim}, "
            f"state_dim={self.spec.state_dim}, control_hz={self.control_hz:g}, connected={self._connected})"
        )


def load_robot(
    path: str | Path,
    *,
    backend: RobotBackend | None = None,
    cameras: Mapping[str, Camera] | None = None,
    overrides: tuple[str, ...] = (),
) -> Robot:
    """A custom robot from a YAML definition alone (see ``librobot.robots.spec``)."""
    return Robot(RobotSpec.from_yaml(path, overrides), backend=backend, cameras=cameras)


def create_robot(name: str, **kwargs: Any) -> RobotInterface:
    """A robot by registry name or alias (``so100``, ``wheel_loader``, ``humanoid``…) or a YAML file path."""
    if not isinstance(name, str):
        raise ConfigError(f"create_robot needs a name or a YAML path, got {type(name).__name__}")
    if name.endswith((".yaml", ".yml")) or Path(name).is_file():
        return load_robot(name, **kwargs)
    from librobot.core.registry import get_registry

    return get_registry("robot").create(name, **kwargs)


def list_robots() -> list[str]:
    from librobot.core.registry import get_registry

    return get_registry("robot").list()


def register_robot(name: str | None = None, **kwargs: Any) -> Any:
    """Decorator registering a robot class or factory: ``@register_robot("my_arm", aliases=["arm"])``."""
    from librobot.core.registry import get_registry

    return get_registry("robot").register(name, **kwargs)
