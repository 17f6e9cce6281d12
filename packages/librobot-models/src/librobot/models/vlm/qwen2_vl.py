"""Qwen2-VL backbones: the 2B, 7B and 72B checkpoints and a tiny config for tests.

Sizes are those of the ``config.json`` files of Qwen/Qwen2-VL-{2B,7B,72B}-Instruct on the Hugging
Face Hub (transformers' config defaults are *not* these sizes); published parameter counts are the
safetensors totals shown on those model pages.
"""

from __future__ import annotations

from typing import Any

from librobot.models.vlm.hf_base import variant_builder
from librobot.models.vlm.qwen_common import QwenVLBase, qwen_token_ids, special_ids

_VISION = {
    "depth": 32,
    "embed_dim": 1280,
    "mlp_ratio": 4,
    "num_heads": 16,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "hidden_act": "quick_gelu",
}
_TEXT = {
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 32768,
    "hidden_act": "silu",
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}

SIZES: dict[str, dict[str, Any]] = {
    "qwen2-vl-2b": {
        "checkpoint": "Qwen/Qwen2-VL-2B-Instruct",
        "published_params": 2.21e9,
        "tie": True,
        "text": {
            "vocab_size": 151936,
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
        },
    },
    "qwen2-vl-7b": {
        "checkpoint": "Qwen/Qwen2-VL-7B-Instruct",
        "published_params": 8.29e9,
        "tie": False,
        "text": {
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
        },
    },
    "qwen2-vl-72b": {
        "checkpoint": "Qwen/Qwen2-VL-72B-Instruct",
        "published_params": 73.4e9,
        "tie": False,
        "text": {
            "vocab_size": 152064,
            "hidden_size": 8192,
            "intermediate_size": 29568,
            "num_hidden_layers": 80,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
        },
    },
}


def make_config(name: str, tokenizer: Any) -> Any:
    from transformers import Qwen2VLConfig

    ids = {**qwen_token_ids(tokenizer), **special_ids(tokenizer)}
    if name == "qwen2-vl-tiny":
        text = {
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6,
            "hidden_act": "silu",
            "max_position_embeddings": 2048,
            # M-RoPE sections (t, h, w) must sum to head_dim / 2 = 8
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        }
        vision = {**_VISION, "depth": 2, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2, "hidden_size": 64}
        tie = False
    else:
        size = SIZES[name]
        text = {**_TEXT, **size["text"]}
        vision = {**_VISION, "hidden_size": text["hidden_size"]}
        tie = size["tie"]
    text.update(bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"], pad_token_id=ids["pad_token_id"])
    return Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=tie,
        **{k: ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")},
    )


class Qwen2VL(QwenVLBase):
    """Qwen2-VL (ViT with 2-D RoPE + 2×2 patch merger, Qwen2 language model with M-RoPE)."""

    family = "qwen2-vl"
    model_types = ("qwen2_vl",)

    @classmethod
    def hf_class(cls) -> type:
        from transformers import Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration


def _factory(name: str, default_size: int):
    return variant_builder(Qwen2VL, name, make_config, SIZES, default_size)


qwen2_vl_2b = _factory("qwen2-vl-2b", 224)
qwen2_vl_7b = _factory("qwen2-vl-7b", 224)
qwen2_vl_72b = _factory("qwen2-vl-72b", 224)
qwen2_vl_tiny = _factory("qwen2-vl-tiny", 56)
