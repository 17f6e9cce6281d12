"""LibroBot VLA model zoo: components, encoders, action heads, VLM backbones, adapters and the VLA
frameworks.

The functions here are thin, torch-free wrappers over the core registry, so
``from librobot.models import list_vlms`` is cheap; a component's module (and torch) is imported
when the component is created.
"""

from __future__ import annotations

from typing import Any

from librobot.core.registry import get_registry

__version__ = "0.1.0"


def _create(category: str, name: str, **kwargs: Any) -> Any:
    return get_registry(category).create(name, **kwargs)


def create_vlm(name: str, **kwargs: Any) -> Any:
    """Build a VLM backbone by registered name or alias, e.g. ``create_vlm("librobot-tiny-vlm")``."""
    return _create("vlm", name, **kwargs)


def register_vlm(name: str | None = None, **kwargs: Any) -> Any:
    """Decorator registering a VLM backbone class: ``@register_vlm("my-vlm", aliases=["mvlm"])``."""
    return get_registry("vlm").register(name, **kwargs)


def list_vlms() -> list[str]:
    return get_registry("vlm").list()


def create_vla(name: str, **kwargs: Any) -> Any:
    """Build a VLA framework: ``create_vla("groot", vlm=vlm, action_dim=7, state_dim=14)``."""
    return _create("vla", name, **kwargs)


def register_vla(name: str | None = None, **kwargs: Any) -> Any:
    return get_registry("vla").register(name, **kwargs)


def list_vlas() -> list[str]:
    return get_registry("vla").list()


def create_action_head(name: str, **kwargs: Any) -> Any:
    return _create("action_head", name, **kwargs)


def register_action_head(name: str | None = None, **kwargs: Any) -> Any:
    return get_registry("action_head").register(name, **kwargs)


def list_action_heads() -> list[str]:
    return get_registry("action_head").list()


def create_encoder(name: str, **kwargs: Any) -> Any:
    return _create("encoder", name, **kwargs)


def register_encoder(name: str | None = None, **kwargs: Any) -> Any:
    return get_registry("encoder").register(name, **kwargs)


__all__ = [
    "create_action_head",
    "create_encoder",
    "create_vla",
    "create_vlm",
    "list_action_heads",
    "list_vlas",
    "list_vlms",
    "register_action_head",
    "register_encoder",
    "register_vla",
    "register_vlm",
]
