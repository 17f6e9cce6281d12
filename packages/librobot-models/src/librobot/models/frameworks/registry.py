"""``librobot.models.frameworks.registry.create_vla`` / ``register_vla`` (the seeds' import path):
the functions of ``librobot.models``, over the core registry's "vla" category."""

from librobot.models import create_vla, list_vlas, register_vla

__all__ = ["create_vla", "list_vlas", "register_vla"]
