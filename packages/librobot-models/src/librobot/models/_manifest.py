"""Torch-free manifest of the model zoo, loaded through the `librobot.plugins` entry point.

Each area keeps its own ``_manifest.py`` (components, encoders, action_heads, vlm, frameworks);
this module only calls the ones that exist, so areas can land independently.
"""

from __future__ import annotations

import importlib
import importlib.util

AREAS = ("components", "encoders", "action_heads", "vlm", "frameworks")


def register() -> None:
    for area in AREAS:
        name = f"librobot.models.{area}._manifest"
        if importlib.util.find_spec(f"librobot.models.{area}") is not None and importlib.util.find_spec(name):
            importlib.import_module(name).register()
