"""Action heads: conditioning → action chunk [B, H, A].

Every head implements ``librobot.core.interfaces.ActionHeadInterface`` through
``ActionHeadBase`` (see ``base.py`` for the conditioning contract). Each head family is a folder
with ``config.py`` (a dataclass that builds the head) and ``model.py``.

Torch-free at import (the registry manifest imports this package); names resolve lazily.
``create_action_head``/``register_action_head``/``list_action_heads`` are those of
``librobot.models``, re-exported at the seeds' import path.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ActionHeadBase": "base",
    "HeadConfig": "base",
    "Conditioning": "base",
    "MLPHead": "mlp.model",
    "MLPHeadConfig": "mlp.config",
    "ACTHead": "act.model",
    "ACTConfig": "act.config",
    "AutoregressiveHead": "autoregressive.model",
    "AutoregressiveConfig": "autoregressive.config",
    "DiffusionHead": "diffusion.model",
    "DiffusionConfig": "diffusion.config",
    "FlowMatchingHead": "flow_matching.model",
    "FlowMatchingConfig": "flow_matching.config",
    "FCDecoderHead": "robovlms.model",
    "LSTMDecoderHead": "robovlms.model",
    "GPTDecoderHead": "robovlms.model",
    "FCDecoderConfig": "robovlms.config",
    "LSTMDecoderConfig": "robovlms.config",
    "GPTDecoderConfig": "robovlms.config",
    "HybridHead": "hybrid.model",
    "HybridConfig": "hybrid.config",
}

_REGISTRY_FUNCTIONS = ("create_action_head", "list_action_heads", "register_action_head")
__all__ = sorted([*_EXPORTS, *_REGISTRY_FUNCTIONS])


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_FUNCTIONS:
        return getattr(importlib.import_module("librobot.models"), name)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'librobot.models.action_heads' has no attribute '{name}'")
    return getattr(importlib.import_module(f"librobot.models.action_heads.{module}"), name)
