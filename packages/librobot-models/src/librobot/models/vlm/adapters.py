"""The seeds' import path ``librobot.models.vlm.adapters``; the adapters live in librobot.models.adapters."""

from librobot.models.adapters.lora import LoRAAdapter, QLoRAAdapter, lora_target_modules

__all__ = ["LoRAAdapter", "QLoRAAdapter", "lora_target_modules"]
