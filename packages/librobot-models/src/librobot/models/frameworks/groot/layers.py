"""GR00T's layer selection: keep a backbone's language layers 1..k and drop the ones above.

Isaac-GR00T's EagleBackbone pops the LLM layers above ``select_layer`` and reads the last hidden
state that remains: layer k's output through the language model's final norm (transformers'
``hidden_states[k]`` of the truncated model, whose last entry is normed). Doing the same here
means the backbone's own forward, unchanged, returns those features.

Each backbone family keeps its layers somewhere else (``_stack``). The depth in the backbone's
own config is updated with the layers, so its ``save_pretrained`` writes a k-layer backbone that
reloads as one, and a reloaded policy's ``select_layer`` then finds nothing left to drop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from torch import nn

from librobot.core.errors import ConfigError

# transformers families whose language layers sit at ``hf.model.language_model.layers``
_HF_DECODERS = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl", "paligemma", "internvl", "llava")


def _hf_stack(vlm: Any) -> tuple[nn.ModuleList, Callable[[int], None]] | None:
    if vlm.family == "florence-2":
        layers = vlm.encoder.layers  # the backbone runs Florence-2's encoder only
    elif vlm.family == "kosmos-2":
        layers = vlm.hf.text_model.model.layers
    elif vlm.family in _HF_DECODERS:
        layers = vlm.hf.model.language_model.layers
    else:
        return None

    def set_depth(k: int) -> None:
        tc = vlm.text_config()  # num_hidden_layers maps to each config's own name (layers, encoder_layers)
        if getattr(tc, "layer_types", None):
            tc.layer_types = list(tc.layer_types[:k])
        tc.num_hidden_layers = k

    return layers, set_depth


def _prefix_lm_stack(lm: Any, record: Callable[[int], None]) -> tuple[nn.ModuleList, Callable[[int], None]]:
    """The layers of a ``PrefixLM`` (the built-in backbones' language model)."""

    def set_depth(k: int) -> None:
        lm.transformer.depth = k
        lm.layout = replace(lm.layout, num_layers=k)
        record(k)  # the backbone's own config, which its save_pretrained writes

    return lm.transformer.layers, set_depth


def _stack(vlm: Any) -> tuple[nn.ModuleList, Callable[[int], None]] | None:
    """(the language layers, a function that records a new depth in the backbone's config)."""
    from librobot.models.vlm.hf_base import HFVLM
    from librobot.models.vlm.pretrained_small import PretrainedSmallVLM
    from librobot.models.vlm.tiny_vlm import TinyVLM

    if isinstance(vlm, TinyVLM):
        return _prefix_lm_stack(vlm.lm, lambda k: setattr(vlm.cfg, "depth", k))
    if isinstance(vlm, PretrainedSmallVLM):  # its language layers are the fusion transformer's
        return _prefix_lm_stack(vlm.fusion, lambda k: vlm.settings.__setitem__("depth", k))
    if isinstance(vlm, HFVLM):
        return _hf_stack(vlm)
    return None


def _unwrapped(vlm: Any) -> tuple[Any, Any]:
    """(the backbone itself, its LoRA wrapper or None): adapters sit inside the backbone's layers."""
    from librobot.models.adapters.lora import LoRAAdapter

    return (vlm.model, vlm) if isinstance(vlm, LoRAAdapter) else (vlm, None)


def _found(vlm: Any) -> tuple[nn.ModuleList, Callable[[int], None]]:
    found = _stack(_unwrapped(vlm)[0])
    if found is None:
        raise ConfigError(
            f"GR00TConfig.select_layer: no known language layers in {type(vlm).__name__}; layer selection "
            "works with librobot-tiny-vlm, pretrained-small and the transformers families. "
            "Leave select_layer None to read its last layer"
        )
    return found


def language_depth(vlm: Any) -> int:
    """How many language layers ``vlm`` has."""
    return len(_found(vlm)[0])


def keep_language_layers(vlm: Any, k: int | None) -> None:
    """Drop ``vlm``'s language layers above ``k`` in place (None: keep them all)."""
    if k is None:
        return
    layers, set_depth = _found(vlm)
    depth = len(layers)
    if k > depth:
        name = vlm.config.get("variant") or vlm.config.get("family")
        raise ConfigError(
            f"GR00TConfig.select_layer={k}, but the backbone ({name}) has {depth} language layers; "
            f"pick 1..{depth}, or None for the last layer"
        )
    if k == depth:
        return  # nothing above k (e.g. a reloaded policy: its backbone was saved truncated)
    del layers[k:]
    set_depth(k)
    lora = _unwrapped(vlm)[1]
    if lora is not None:  # adapters on the dropped layers went with them: the saved settings must agree
        present = {name for name, _ in lora.model.named_modules()}
        lora.settings["targets"] = [t for t in lora.settings["targets"] if t in present]
