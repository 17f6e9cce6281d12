"""The seeds' import path for the VLM registry helpers (``from librobot.models.vlm.registry import
create_vlm``); they are the core registry's ``vlm`` category."""

from librobot.models import create_vlm, list_vlms, register_vlm

__all__ = ["create_vlm", "list_vlms", "register_vlm"]
