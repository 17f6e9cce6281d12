"""librobot-core: registry, config, interfaces, specs, errors, logging, seeding, safe checkpoints.

Torch-free and cheap to import: submodules that pull third-party code (OmegaConf, safetensors) are
loaded on first use of their names.
"""

from __future__ import annotations

import importlib
from typing import Any

from librobot.core.errors import (
    CheckpointError,
    ChecksumMismatchError,
    ConfigError,
    DuplicateComponentError,
    LibroBotError,
    MissingExtraError,
    PluginError,
    RegistryError,
    SpecError,
    UnknownComponentError,
    UntrustedCodeError,
)
from librobot.core.registry import CATEGORIES, Registry, add_category, create, get_registry, register, registries

__version__ = "0.1.0"

_LAZY = {
    "load_config": "librobot.core.config",
    "save_config": "librobot.core.config",
    "validate_config": "librobot.core.config",
    "merge_configs": "librobot.core.config",
    "save_checkpoint": "librobot.core.checkpoint",
    "load_checkpoint": "librobot.core.checkpoint",
    "verify_checkpoint": "librobot.core.checkpoint",
    "FeatureSpec": "librobot.core.specs",
    "BoxSpace": "librobot.core.specs",
    "seed_everything": "librobot.core.seeding",
    "get_logger": "librobot.core.logging",
    "configure_logging": "librobot.core.logging",
    "require": "librobot.core.extras",
    "load_plugin_dir": "librobot.core.plugins",
    "code_references": "librobot.core.references",
}

__all__ = [
    "CATEGORIES",
    "CheckpointError",
    "ChecksumMismatchError",
    "ConfigError",
    "DuplicateComponentError",
    "LibroBotError",
    "MissingExtraError",
    "PluginError",
    "Registry",
    "RegistryError",
    "SpecError",
    "UnknownComponentError",
    "UntrustedCodeError",
    "add_category",
    "create",
    "get_registry",
    "register",
    "registries",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'librobot.core' has no attribute '{name}'")
