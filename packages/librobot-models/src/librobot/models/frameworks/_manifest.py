"""Torch-free manifest of the VLA frameworks (registry category "vla").

Each framework folder declares ``REGISTRY = {"name": ..., "target": "model:Class", "aliases": [...],
"doc": ...}`` in its ``__init__.py`` (constants only, no torch); this module discovers the folders,
so adding a framework never edits a shared list.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from librobot.core.registry import get_registry


def register() -> None:
    vla = get_registry("vla")
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if not info.ispkg:
            continue
        package = f"librobot.models.frameworks.{info.name}"
        entries = getattr(importlib.import_module(package), "REGISTRY", None)
        for entry in [entries] if isinstance(entries, dict) else entries or []:
            vla.register_lazy(
                entry["name"],
                f"{package}.{entry['target']}",
                aliases=entry.get("aliases", []),
                doc=entry.get("doc", ""),
                source="librobot-models",
            )
