"""LibroBot VLA robots: robot definitions, safety layer, drivers and simulated tasks (torch-free, for the edge).

Depends on librobot-core and numpy only; simulators and hardware libraries are extras imported
when first used. Names below load their module on first access, so ``import librobot.robots`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_robot": "librobot.robots.base",
    "list_robots": "librobot.robots.base",
    "register_robot": "librobot.robots.base",
    "load_robot": "librobot.robots.base",
    "Robot": "librobot.robots.base",
    "RobotBackend": "librobot.robots.base",
    "RobotSpec": "librobot.robots.spec",
    "CameraSpec": "librobot.robots.spec",
    "HOLD": "librobot.robots.spec",
    "SafetyLayer": "librobot.robots.safety",
    "SafeRobot": "librobot.robots.safety",
    "ManualClock": "librobot.robots.safety",
    "Intervention": "librobot.robots.safety",
    "SO100Arm": "librobot.robots.so100",
    "so100_spec": "librobot.robots.so100",
    "Humanoid": "librobot.robots.humanoid",
    "humanoid_spec": "librobot.robots.humanoid",
    "WheelLoader": "librobot.robots.wheel_loader",
    "wheel_loader_spec": "librobot.robots.wheel_loader",
    "SyntheticCamera": "librobot.robots.drivers.cameras",
    "OpenCVCamera": "librobot.robots.drivers.cameras",
    "make_env": "librobot.robots.sim.api",
    "make_expert": "librobot.robots.sim.api",
    "list_envs": "librobot.robots.sim.api",
    "record_episodes": "librobot.robots.sim.api",
    "evaluate_expert": "librobot.robots.sim.api",
    "env_info": "librobot.robots.sim.api",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'librobot.robots' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
