"""Reusable building blocks: attention, norms, positions, MLPs, transformer blocks, conditioning.

This ``__init__`` is torch-free (the registry manifest imports the package to list entries); names
are resolved lazily from the submodules on first access, so ``from librobot.models.components
import Attention`` works and only then imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Attention": "attention",
    "AttentionPool": "attention",
    "KVCache": "attention",
    "RMSNorm": "normalization",
    "LayerNorm": "normalization",
    "GroupNorm": "normalization",
    "build_norm": "normalization",
    "sinusoidal_embedding": "positional",
    "SinusoidalPositionalEmbedding": "positional",
    "LearnedPositionalEmbedding": "positional",
    "TimestepEmbedding": "positional",
    "RotaryEmbedding": "positional",
    "apply_rotary": "positional",
    "rotate": "positional",
    "RotaryTables": "positional",
    "ALiBi": "positional",
    "alibi_slopes": "positional",
    "MLP": "mlp",
    "FeedForward": "mlp",
    "GatedFeedForward": "mlp",
    "SwiGLU": "mlp",
    "GeGLU": "mlp",
    "build_activation": "mlp",
    "FiLM": "conditioning",
    "AdaLNModulation": "conditioning",
    "modulate": "conditioning",
    "TransformerBlock": "transformer",
    "Transformer": "transformer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'librobot.models.components' has no attribute '{name}'")
    return getattr(importlib.import_module(f"librobot.models.components.{module}"), name)
