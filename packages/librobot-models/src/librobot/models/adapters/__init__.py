"""Parameter-efficient fine-tuning of any backbone: LoRA and QLoRA through peft.

Torch-free at import; names resolve lazily (``from librobot.models.adapters import LoRAAdapter``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LoRAAdapter": "lora",
    "QLoRAAdapter": "lora",
    "lora_target_modules": "lora",
    "lora_adapter": "lora",
    "qlora_adapter": "lora",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'librobot.models.adapters' has no attribute '{name}'")
    return getattr(importlib.import_module(f"librobot.models.adapters.{module}"), name)
