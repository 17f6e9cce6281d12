"""Qwen3-VL backbones: the dense 2B, 4B, 8B and 32B checkpoints and a tiny config for tests.

There is no Qwen3-VL 7B: the seeds' "qwen3-vl-7b" is registered as an alias of the real 8B (see
vlm/_manifest.py). Sizes are those of the ``config.json`` files of Qwen/Qwen3-VL-{2B,4B,8B,32B}-Instruct
on the Hugging Face Hub; published parameter counts are the safetensors totals of those checkpoints.
The tower takes 16-px patches (so image sizes are multiples of 32) and feeds DeepStack features
from three mid-tower blocks into the first language layers.
"""

from __future__ import annotations

from typing import Any

from librobot.models.vlm.hf_base import variant_builder
from librobot.models.vlm.preprocess import HALF
from librobot.models.vlm.qwen_common import QwenVLBase, qwen_token_ids, special_ids

_SMALL_TOWER = {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "deepstack_visual_indexes": [5, 11, 17]}
_LARGE_TOWER = {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "deepstack_visual_indexes": [8, 16, 24]}
_VISION = {
    "num_heads": 16,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "hidden_act": "gelu_pytorch_tanh",
    "num_position_embeddings": 2304,
}
_TEXT = {
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 262144,
    "hidden_act": "silu",
    "head_dim": 128,
    "vocab_size": 151936,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 5000000.0,
        "mrope_section": [24, 20, 20],
        "mrope_interleaved": True,
    },
}

SIZES: dict[str, dict[str, Any]] = {
    "qwen3-vl-2b": {
        "checkpoint": "Qwen/Qwen3-VL-2B-Instruct",
        "published_params": 2.13e9,
        "tie": True,
        "tower": _SMALL_TOWER,
        "text": {
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
        },
    },
    "qwen3-vl-4b": {
        "checkpoint": "Qwen/Qwen3-VL-4B-Instruct",
        "published_params": 4.44e9,
        "tie": True,
        "tower": _SMALL_TOWER,
        "text": {
            "hidden_size": 2560,
            "intermediate_size": 9728,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
        },
    },
    "qwen3-vl-8b": {
        "checkpoint": "Qwen/Qwen3-VL-8B-Instruct",
        "published_params": 8.77e9,
        "tie": False,
        "tower": _LARGE_TOWER,
        "text": {
            "hidden_size": 4096,
            "intermediate_size": 12288,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
        },
    },
    "qwen3-vl-32b": {
        "checkpoint": "Qwen/Qwen3-VL-32B-Instruct",
        "published_params": 33.4e9,
        "tie": False,
        "tower": _LARGE_TOWER,
        "text": {
            "hidden_size": 5120,
            "intermediate_size": 25600,
            "num_hidden_layers": 64,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
        },
    },
}


def make_config(name: str, tokenizer: Any) -> Any:
    from transformers import Qwen3VLConfig

    ids = {**qwen_token_ids(tokenizer), **special_ids(tokenizer)}
    if name == "qwen3-vl-tiny":
        text = {
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "rms_norm_eps": 1e-6,
            "hidden_act": "silu",
            "max_position_embeddings": 2048,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        }
        vision = {
            **_VISION,
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "deepstack_visual_indexes": [0],
            "num_position_embeddings": 64,
        }
        tie = False
    else:
        size = SIZES[name]
        text = {**_TEXT, **size["text"]}
        vision = {**_VISION, **size["tower"], "out_hidden_size": text["hidden_size"]}
        tie = size["tie"]
    text.update(bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"], pad_token_id=ids["pad_token_id"])
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=tie,
        **{k: ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")},
    )


class Qwen3VL(QwenVLBase):
    """Qwen3-VL (ViT with learned + 2-D RoPE positions, DeepStack, Qwen3 LM with interleaved M-RoPE)."""

    family = "qwen3-vl"
    model_types = ("qwen3_vl",)
    image_mean = HALF
    image_std = HALF

    @classmethod
    def hf_class(cls) -> type:
        from transformers import Qwen3VLForConditionalGeneration

        return Qwen3VLForConditionalGeneration


def _factory(name: str, default_size: int):
    return variant_builder(Qwen3VL, name, make_config, SIZES, default_size)


qwen3_vl_2b = _factory("qwen3-vl-2b", 224)
qwen3_vl_4b = _factory("qwen3-vl-4b", 224)
qwen3_vl_8b = _factory("qwen3-vl-8b", 224)
qwen3_vl_32b = _factory("qwen3-vl-32b", 224)
qwen3_vl_tiny = _factory("qwen3-vl-tiny", 64)
