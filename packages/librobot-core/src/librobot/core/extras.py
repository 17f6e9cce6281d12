"""Optional dependencies: import lazily, and fail with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from librobot.core.errors import MissingExtraError


def require(module: str, *, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise ``MissingExtraError`` telling the user which extra provides it.

    >>> av = require("av", extra="librobot-data[video]", purpose="decoding LeRobot videos")
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingExtraError(
            f"the optional dependency '{module}' is needed{what} but could not be imported ({exc}). "
            f"Install it with: pip install '{extra}'"
        ) from exc


def is_available(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
