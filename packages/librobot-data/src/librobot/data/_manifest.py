"""Torch-free manifest of this package's components, loaded through the `librobot.plugins`
entry point: each entry maps a registry name (and aliases) to "module:attr" without importing it."""

from __future__ import annotations


def register() -> None:
    """Add this package's lazy registry entries."""
