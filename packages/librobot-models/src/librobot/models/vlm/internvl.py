"""InternVL2 backbones in the Hugging Face-converted ("-hf") layout: 1B, 2B, 8B and 26B, and a tiny
config for tests.

The converted checkpoints hold an InternViT tower, the pixel-shuffle (0.5) MLP projector and the
language model in transformers' own format: Qwen2 for the 1B, and InternLM2 rewritten as Llama for
the 2B/8B/26B (as transformers' InternVL conversion script does). Sizes follow the ``config.json``
files of OpenGVLab/InternVL2-{1B,2B,8B,26B} (vision_config and llm_config); published parameter
counts are from those model pages. Each view is one 448-px tile (no dynamic tiling: cameras are
already views) → 256 tokens, laid out ``<img> <IMG_CONTEXT>×256 </img>\\n`` before the instruction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from librobot.models.vlm.hf_base import HFVLM, variant_builder
from librobot.models.vlm.preprocess import IMAGENET_MEAN, IMAGENET_STD

_VIT_300M = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "attention_bias": True,
    "use_qk_norm": False,
    "norm_type": "layer_norm",
    "layer_norm_eps": 1e-6,
    "image_size": [448, 448],
    "patch_size": [14, 14],
    "layer_scale_init_value": 0.1,
}
_VIT_6B = {
    "hidden_size": 3200,
    "intermediate_size": 12800,
    "num_hidden_layers": 45,
    "num_attention_heads": 25,
    "attention_bias": False,
    "use_qk_norm": True,
    "norm_type": "rms_norm",
    "layer_norm_eps": 1e-6,
    "image_size": [448, 448],
    "patch_size": [14, 14],
    "layer_scale_init_value": 0.1,
}
_INTERNLM2 = {
    "model_type": "llama",
    "vocab_size": 92553,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 32768,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}

SIZES: dict[str, dict[str, Any]] = {
    "internvl2-1b": {
        "checkpoint": "OpenGVLab/InternVL2-1B",
        "published_params": 0.938e9,
        "vision": _VIT_300M,
        "text": {
            "model_type": "qwen2",
            "vocab_size": 151655,
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
            "tie_word_embeddings": False,
        },
    },
    "internvl2-2b": {
        "checkpoint": "OpenGVLab/InternVL2-2B",
        "published_params": 2.21e9,
        "vision": _VIT_300M,
        "text": {
            **_INTERNLM2,
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
        },
    },
    "internvl2-8b": {
        "checkpoint": "OpenGVLab/InternVL2-8B",
        "published_params": 8.08e9,
        "vision": _VIT_300M,
        "text": {
            **_INTERNLM2,
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
        },
    },
    "internvl2-26b": {
        "checkpoint": "OpenGVLab/InternVL2-26B",
        "published_params": 25.5e9,
        "vision": _VIT_6B,
        "text": {
            **_INTERNLM2,
            "hidden_size": 6144,
            "intermediate_size": 16384,
            "num_hidden_layers": 48,
            "num_attention_heads": 48,
            "num_key_value_heads": 8,
        },
    },
}

SPECIALS = ("<img>", "</img>", "<IMG_CONTEXT>")


def make_config(name: str, tokenizer: Any) -> Any:
    from transformers import InternVLConfig

    if name == "internvl2-tiny":
        vision = {
            **_VIT_300M,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": [32, 32],
            "patch_size": [8, 8],
        }
        text = {
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": False,
        }
    else:
        size = SIZES[name]
        vision, text = dict(size["vision"]), dict(size["text"])
    text.update(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    tokens_per_tile = (vision["image_size"][0] // vision["patch_size"][0]) ** 2 // 4
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=tokens_per_tile,
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        tie_word_embeddings=text["tie_word_embeddings"],
    )


class InternVL(HFVLM):
    """InternVL (-hf layout): InternViT + pixel-shuffle MLP projector + Qwen2/Llama language model."""

    family = "internvl"
    model_types = ("internvl",)
    specials = SPECIALS
    image_mean = IMAGENET_MEAN
    image_std = IMAGENET_STD

    @classmethod
    def hf_class(cls) -> type:
        from transformers import InternVLForConditionalGeneration

        return InternVLForConditionalGeneration

    def default_image_size(self) -> tuple[int, int]:
        return tuple(self.hf.config.vision_config.image_size)

    def tokens_per_view(self) -> int:
        vc = self.hf.config.vision_config
        grid = (vc.image_size[0] // vc.patch_size[0]) * (vc.image_size[1] // vc.patch_size[1])
        return int(grid * self.hf.config.downsample_ratio**2)

    def _image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        cfg = self.hf.config
        out = self.hf.model.get_image_features(
            pixel_values=pixels.to(self.dtype),
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        )
        return out.pooler_output, {}

    def _prompt(self, text_ids: list[int], num_views: int) -> list[int]:
        tok = self.tokenizer
        start = self.special_id(getattr(tok, "start_image_token", None) or "<img>")
        end = self.special_id(getattr(tok, "end_image_token", None) or "</img>")
        newline = tok("\n", add_special_tokens=False)["input_ids"]
        block = [start] + [self.image_token_id] * self.tokens_per_view() + [end] + newline
        return block * num_views + list(text_ids)

    def _language(self, embeds, mask, positions, cache, use_cache, extras) -> tuple[torch.Tensor, Any]:
        out = self.hf.model.language_model(
            inputs_embeds=embeds,
            attention_mask=self._attention_mask(mask, extras),
            position_ids=positions,
            past_key_values=cache,
            use_cache=use_cache,
        )
        return out.last_hidden_state, out.past_key_values

    def part_modules(self) -> dict[str, list[nn.Module]]:
        return {
            "vision": [self.hf.model.vision_tower],
            "projector": [self.hf.model.multi_modal_projector],
            "language": [self.hf.model.language_model, self.hf.lm_head],
        }

    def image_processor(self) -> Any:
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

        h, w = self.image_size
        return GotOcr2ImageProcessorPil(
            size={"height": h, "width": w}, crop_to_patches=False, image_mean=list(self.mean), image_std=list(self.std)
        )


def _factory(name: str):
    return variant_builder(InternVL, name, make_config, SIZES)


internvl2_1b = _factory("internvl2-1b")
internvl2_2b = _factory("internvl2-2b")
internvl2_8b = _factory("internvl2-8b")
internvl2_26b = _factory("internvl2-26b")
internvl2_tiny = _factory("internvl2-tiny")
