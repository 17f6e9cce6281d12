"""VLM backbones: transformers wrappers (Qwen2/2.5/3-VL, Florence-2, PaliGemma, InternVL, LLaVA,
KosMos-2), the built-in ``librobot-tiny-vlm`` and the offline ``pretrained-small`` backbone.

Torch-free at import (the registry manifest imports this package to list entries); classes resolve
lazily on first access. Build one with ``create_vlm("qwen2-vl-2b", pretrained="/path/to/folder")``.
"""

from __future__ import annotations

import importlib
from typing import Any

from librobot.models import create_vlm as create_vlm
from librobot.models import list_vlms as list_vlms
from librobot.models import register_vlm as register_vlm

_EXPORTS = {
    "AbstractVLM": "base",
    "VLMOutput": "base",
    "PrefixKV": "kv_cache",
    "KVLayout": "kv_cache",
    "attend_to_prefix": "kv_cache",
    "HFVLM": "hf_base",
    "TinyVLM": "tiny_vlm",
    "TinyVLMConfig": "tiny_vlm",
    "PretrainedSmallVLM": "pretrained_small",
    "build_byte_tokenizer": "tokenizer",
}

__all__ = sorted([*_EXPORTS, "create_vlm", "list_vlms", "register_vlm"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'librobot.models.vlm' has no attribute '{name}'")
    return getattr(importlib.import_module(f"librobot.models.vlm.{module}"), name)
