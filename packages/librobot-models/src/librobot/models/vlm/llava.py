"""LLaVA-1.5 backbones (CLIP ViT-L/14-336 + 2-layer MLP projector + Vicuna): 7B and 13B, and a tiny
config for tests.

Sizes follow the ``config.json`` files of llava-hf/llava-1.5-{7b,13b}-hf (the transformers-format
conversions of liuhaotian/llava-v1.5-*); published parameter counts are those checkpoints' safetensors
totals. Features come from the tower's second-to-last layer without the CLS token (576 per view), and
the prompt is LLaVA-1.5's ``USER: <image>\\n{instruction} ASSISTANT:``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from librobot.models.vlm.hf_base import HFVLM, variant_builder
from librobot.models.vlm.preprocess import CLIP_MEAN, CLIP_STD

_CLIP_L_336 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
_VICUNA = {
    "model_type": "llama",
    "vocab_size": 32064,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 4096,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}

SIZES: dict[str, dict[str, Any]] = {
    "llava-1.5-7b": {
        "checkpoint": "llava-hf/llava-1.5-7b-hf",
        "published_params": 7.06e9,
        "text": {
            **_VICUNA,
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
        },
    },
    "llava-1.5-13b": {
        "checkpoint": "llava-hf/llava-1.5-13b-hf",
        "published_params": 13.4e9,
        "text": {
            **_VICUNA,
            "hidden_size": 5120,
            "intermediate_size": 13824,
            "num_hidden_layers": 40,
            "num_attention_heads": 40,
            "num_key_value_heads": 40,
        },
    },
}


def make_config(name: str, tokenizer: Any) -> Any:
    from transformers import LlavaConfig

    if name == "llava-tiny":
        vision = {
            **_CLIP_L_336,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
            "projection_dim": 32,
        }
        text = {
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "rms_norm_eps": 1e-5,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": False,
        }
    else:
        vision, text = dict(_CLIP_L_336), dict(SIZES[name]["text"])
    text.update(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    return LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **vision},
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )


class Llava(HFVLM):
    """LLaVA-1.5: CLIP tower (penultimate layer, no CLS), GELU MLP projector, Llama/Vicuna."""

    family = "llava"
    model_types = ("llava",)
    specials = ("<image>",)
    instruction_template = "\n{text} ASSISTANT:"  # after "USER: <image>" (LLaVA-1.5's conversation)
    image_mean = CLIP_MEAN
    image_std = CLIP_STD

    @classmethod
    def hf_class(cls) -> type:
        from transformers import LlavaForConditionalGeneration

        return LlavaForConditionalGeneration

    def tokens_per_view(self) -> int:
        vc = self.hf.config.vision_config
        n = (vc.image_size // vc.patch_size) ** 2
        return n if self.hf.config.vision_feature_select_strategy == "default" else n + 1

    def _image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        cfg = self.hf.config
        out = self.hf.model.get_image_features(
            pixel_values=pixels.to(self.dtype),
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        )
        feats = out.pooler_output
        return (torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats), {}

    def _prompt(self, text_ids: list[int], num_views: int) -> list[int]:
        tok = self.tokenizer
        user = tok("USER: ", add_special_tokens=False)["input_ids"]
        images = [self.image_token_id] * (self.tokens_per_view() * num_views)
        return [tok.bos_token_id, *user, *images, *text_ids]

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
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        h, w = self.image_size
        return CLIPImageProcessorPil(
            size={"shortest_edge": min(h, w)},
            crop_size={"height": h, "width": w},
            image_mean=list(self.mean),
            image_std=list(self.std),
        )


def _factory(name: str):
    return variant_builder(Llava, name, make_config, SIZES)


llava_1_5_7b = _factory("llava-1.5-7b")
llava_1_5_13b = _factory("llava-1.5-13b")
llava_tiny = _factory("llava-tiny")
