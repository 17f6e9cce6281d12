"""Qwen2.5-VL backbones: the 3B, 7B, 32B and 72B checkpoints and a tiny config for tests.

Sizes are those of the ``config.json`` files of Qwen/Qwen2.5-VL-{3B,7B,32B,72B}-Instruct on the
Hugging Face Hub; published parameter counts are the safetensors totals of those model pages. The
vision tower (window attention, SwiGLU, RMSNorm) is the same 32-block, 1280-wide ViT in every size.
"""

from __future__ import annotations

from typing import Any

from librobot.models.vlm.hf_base import variant_builder
from librobot.models.vlm.qwen_common import QwenVLBase, qwen_token_ids, special_ids

_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "hidden_act": "silu",
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}
_TEXT = {
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 128000,
    "hidden_act": "silu",
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}

SIZES: dict[str, dict[str, Any]] = {
    "qwen2.5-vl-3b": {
        "checkpoint": "Qwen/Qwen2.5-VL-3B-Instruct",
        "published_params": 3.75e9,
        "tie": True,
        "text": {
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
        },
    },
    "qwen2.5-vl-7b": {
        "checkpoint": "Qwen/Qwen2.5-VL-7B-Instruct",
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
    "qwen2.5-vl-32b": {
        "checkpoint": "Qwen/Qwen2.5-VL-32B-Instruct",
        "published_params": 33.5e9,
        "tie": False,
        "text": {
            "vocab_size": 152064,
            "hidden_size": 5120,
            "intermediate_size": 27648,
            "num_hidden_layers": 64,
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
        },
    },
    "qwen2.5-vl-72b": {
        "checkpoint": "Qwen/Qwen2.5-VL-72B-Instruct",
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
    from transformers import Qwen2_5_VLConfig

    ids = {**qwen_token_ids(tokenizer), **special_ids(tokenizer)}
    if name == "qwen2.5-vl-tiny":
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
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        }
        # window 56 px = 2×2 merged units; block 1 uses full attention, block 0 windows
        vision = {
            **_VISION,
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        }
        tie = False
    else:
        size = SIZES[name]
        text = {**_TEXT, **size["text"]}
        vision = {**_VISION, "out_hidden_size": text["hidden_size"]}
        tie = size["tie"]
    text.update(bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"], pad_token_id=ids["pad_token_id"])
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=tie,
        **{k: ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")},
    )


class Qwen25VL(QwenVLBase):
    """Qwen2.5-VL (window-attention ViT, SwiGLU + RMSNorm, Qwen2.5 language model with M-RoPE)."""

    family = "qwen2.5-vl"
    model_types = ("qwen2_5_vl",)

    @classmethod
    def hf_class(cls) -> type:
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration


def _factory(name: str, default_size: int):
    return variant_builder(Qwen25VL, name, make_config, SIZES, default_size)


qwen2_5_vl_3b = _factory("qwen2.5-vl-3b", 224)
qwen2_5_vl_7b = _factory("qwen2.5-vl-7b", 224)
qwen2_5_vl_32b = _factory("qwen2.5-vl-32b", 224)
qwen2_5_vl_72b = _factory("qwen2.5-vl-72b", 224)
qwen2_5_vl_tiny = _factory("qwen2.5-vl-tiny", 56)
