"""Action tokenizers (numpy, ``ActionTokenizerInterface``) and a text tokenizer wrapper.

Import them from their modules (``librobot.data.tokenizers.fast``) or through the core registry
(category "tokenizer": "uniform-bins", "fast", "text"), which is how the models package gets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from librobot.core.interfaces import ActionTokenizerInterface


def tokenizer_from_dict(state: Mapping[str, Any]) -> ActionTokenizerInterface:
    """Rebuild an action tokenizer from ``to_dict()`` state (its "type" names the class)."""
    from librobot.core.registry import get_registry

    return get_registry("tokenizer").get(state["type"]).from_dict(state)


__all__ = ["tokenizer_from_dict"]
