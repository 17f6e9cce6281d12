"""PaliGemma backbones (SigLIP So400m/14 + Gemma): PaliGemma 3B at 224/448/896 px, PaliGemma 2
3B/10B/28B (Gemma 2 language models), and tiny configs for tests.

Sizes follow the ``config.json`` files of google/paligemma-3b-pt-{224,448,896} and
google/paligemma2-{3b,10b,28b}-pt-224 on the Hugging Face Hub; published parameter counts are those
checkpoints' safetensors totals. The prompt is PaliGemma's own: ``<image>×256·N <bos> text \\n``,
with the image + prompt prefix attending bidirectionally (prefix-LM), as the model was trained;
suffix tokens are causal and see the whole prefix.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from librobot.models.vlm.hf_base import HFVLM, variant_builder
from librobot.models.vlm.preprocess import HALF

_SIGLIP_SO400M = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "patch_size": 14,
    "projection_dim": 2048,
    "vision_use_head": False,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
}
_GEMMA_2B = {
    "model_type": "gemma",
    "hidden_size": 2048,
    "intermediate_size": 16384,
    "num_hidden_layers": 18,
    "num_attention_heads": 8,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "vocab_size": 257216,
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 8192,
}
_GEMMA2 = {
    "model_type": "gemma2",
    "vocab_size": 257216,
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 8192,
    "sliding_window": 4096,
    "final_logit_softcapping": 30.0,
    "attn_logit_softcapping": 50.0,
}

SIZES: dict[str, dict[str, Any]] = {
    "paligemma-3b": {
        "checkpoint": "google/paligemma-3b-pt-224",
        "published_params": 2.92e9,
        "image": 224,
        "text": _GEMMA_2B,
    },
    "paligemma-3b-448": {
        "checkpoint": "google/paligemma-3b-pt-448",
        "published_params": 2.92e9,
        "image": 448,
        "text": _GEMMA_2B,
    },
    "paligemma-3b-896": {
        "checkpoint": "google/paligemma-3b-pt-896",
        "published_params": 2.93e9,
        "image": 896,
        "text": _GEMMA_2B,
    },
    "paligemma2-3b": {
        "checkpoint": "google/paligemma2-3b-pt-224",
        "published_params": 3.03e9,
        "image": 224,
        "text": {
            **_GEMMA2,
            "hidden_size": 2304,
            "intermediate_size": 9216,
            "num_hidden_layers": 26,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 256,
            "query_pre_attn_scalar": 256,
        },
    },
    "paligemma2-10b": {
        "checkpoint": "google/paligemma2-10b-pt-224",
        "published_params": 9.66e9,
        "image": 224,
        "text": {
            **_GEMMA2,
            "hidden_size": 3584,
            "intermediate_size": 14336,
            "num_hidden_layers": 42,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 256,
            "query_pre_attn_scalar": 256,
        },
    },
    "paligemma2-28b": {
        "checkpoint": "google/paligemma2-28b-pt-224",
        "published_params": 27.7e9,
        "image": 224,
        "text": {
            **_GEMMA2,
            "hidden_size": 4608,
            "intermediate_size": 36864,
            "num_hidden_layers": 46,
            "num_attention_heads": 32,
            "num_key_value_heads": 16,
            "head_dim": 128,
            "query_pre_attn_scalar": 144,
        },
    },
}

_TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 2048,
}
TINY = {
    "paligemma-tiny": {"model_type": "gemma", **_TINY_TEXT},
    "paligemma2-tiny": {
        **_GEMMA2,
        **_TINY_TEXT,
        "num_key_value_heads": 2,
        "query_pre_attn_scalar": 16,
        "sliding_window": 64,
    },
}


def make_config(name: str, tokenizer: Any) -> Any:
    from transformers import PaliGemmaConfig

    if name in TINY:
        text = {**TINY[name], "vocab_size": len(tokenizer)}
        vision = {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "patch_size": 8,
            "image_size": 32,
            "vision_use_head": False,
            "hidden_act": "gelu_pytorch_tanh",
        }
        projection = 64
    else:
        size = SIZES[name]
        text = dict(size["text"])
        vision = {**_SIGLIP_SO400M, "image_size": size["image"]}
        projection = text["hidden_size"]
    text.update(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    vision["projection_dim"] = projection
    return PaliGemmaConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=projection,
        hidden_size=text["hidden_size"],
        vocab_size=text["vocab_size"],
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )


class PaliGemma(HFVLM):
    """PaliGemma / PaliGemma 2: SigLIP tower, linear projector, Gemma (2) language model."""

    family = "paligemma"
    model_types = ("paligemma",)
    specials = ("<image>",)
    instruction_template = "{text}\n"  # the processor's "<image>…<bos>{prompt}\n"
    image_mean = HALF
    image_std = HALF
    resample = "bicubic"
    prefix_attention = "bidirectional"
    position_start = 1  # PaliGemma counts positions from 1

    @classmethod
    def hf_class(cls) -> type:
        from transformers import PaliGemmaForConditionalGeneration

        return PaliGemmaForConditionalGeneration

    def tokens_per_view(self) -> int:
        vc = self.hf.config.vision_config
        return (vc.image_size // vc.patch_size) ** 2

    def _image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self.hf.model.get_image_features(pixels.to(self.dtype))
        return out.pooler_output, {}

    def _prompt(self, text_ids: list[int], num_views: int) -> list[int]:
        images = [self.image_token_id] * (self.tokens_per_view() * num_views)
        return [*images, self.tokenizer.bos_token_id, *text_ids]

    def _language(self, embeds, mask, positions, cache, use_cache, extras) -> tuple[torch.Tensor, Any]:
        s = extras.get("suffix_length", 0)
        if cache is None and s and extras.get("suffix_attention") == "bidirectional":
            return self._block_suffix_language(embeds, mask, positions, use_cache, s)
        token_type = None
        if cache is None:  # first pass: prefix (type 0) is bidirectional, a suffix (type 1) causal
            token_type = torch.zeros_like(mask, dtype=torch.long)
            s = extras.get("suffix_length", 0)
            if s:
                token_type[:, -s:] = 1
        out = self.hf.model(
            inputs_embeds=embeds,
            attention_mask=mask.long(),
            position_ids=positions,
            token_type_ids=token_type,
            past_key_values=cache,
            use_cache=use_cache,
        )
        return out.last_hidden_state, out.past_key_values

    def _block_suffix_language(self, embeds, mask, positions, use_cache, s) -> tuple[torch.Tensor, Any]:
        """A bidirectional suffix: PaliGemma's own forward marks the prefix as block 0 (bidirectional)
        and leaves the suffix causal (-1) with no way to make it a block, so the masks it would build
        are built here with the suffix as block 1 (sliding-window ones too, for PaliGemma 2) and its
        language model runs with them, as that forward would run it."""
        from transformers import DynamicCache
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        tc = self.text_config()
        cache = DynamicCache(config=tc) if use_cache else None
        blocks = torch.zeros_like(mask, dtype=torch.long)
        blocks[:, -s:] = 1
        args = (tc, embeds, mask.long(), cache, positions)
        masks = create_causal_mask(*args, block_sequence_ids=blocks)
        if getattr(tc, "sliding_window", None) is not None:
            masks = {
                "full_attention": masks,
                "sliding_attention": create_sliding_window_causal_mask(*args, block_sequence_ids=blocks),
            }
        out = self.hf.model.language_model(
            inputs_embeds=embeds,
            attention_mask=masks,
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
        from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

        h, w = self.image_size
        return SiglipImageProcessorPil(
            size={"height": h, "width": w}, image_mean=list(self.mean), image_std=list(self.std)
        )


def _factory(name: str):
    return variant_builder(PaliGemma, name, make_config, SIZES)


paligemma_3b = _factory("paligemma-3b")
paligemma_3b_448 = _factory("paligemma-3b-448")
paligemma_3b_896 = _factory("paligemma-3b-896")
paligemma2_3b = _factory("paligemma2-3b")
paligemma2_10b = _factory("paligemma2-10b")
paligemma2_28b = _factory("paligemma2-28b")
paligemma_tiny = _factory("paligemma-tiny")
paligemma2_tiny = _factory("paligemma2-tiny")
