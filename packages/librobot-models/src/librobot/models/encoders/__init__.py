"""Encoders: state (MLP, transformer), history (LSTM, transformer), fusion (cross-attention, FiLM),
the perceiver resampler and image encoders (ResNet-18-style CNN, ViT) that need no torchvision.

Torch-free at import (the registry manifest imports this package); names resolve lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EncoderBase": "base",
    "MLPStateEncoder": "state",
    "TransformerStateEncoder": "state",
    "LSTMHistoryEncoder": "history",
    "TransformerHistoryEncoder": "history",
    "CrossAttentionFusion": "fusion",
    "FiLMFusion": "fusion",
    "PerceiverResampler": "perceiver",
    "ResNetEncoder": "image",
    "ViTEncoder": "image",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'librobot.models.encoders' has no attribute '{name}'")
    return getattr(importlib.import_module(f"librobot.models.encoders.{module}"), name)
