"""KosMos-2 (the RoboVLMs backbone): CLIP ViT-L/14-224 + 64-query resampler + a 24-layer decoder, and a
tiny config for tests.

Sizes are those of microsoft/kosmos-2-patch14-224 (transformers' Kosmos2Config defaults equal that
checkpoint; they are written out here anyway so the variant does not drift with the library); its
published parameter count is 1.66B. The prompt is KosMos-2's: ``<s> <image> [64 image slots] </image>
instruction``; the image slots are the ids after ``<unk>``, as the Kosmos-2 processor assigns them.
Positions are the decoder's sinusoidal table, offset by ``pad_token_id + 1`` as in the original.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from librobot.models.vlm.hf_base import HFVLM, variant_builder
from librobot.models.vlm.preprocess import CLIP_MEAN, CLIP_STD

_VISION = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
_TEXT = {
    "vocab_size": 65037,
    "embed_dim": 2048,
    "layers": 24,
    "ffn_dim": 8192,
    "attention_heads": 32,
    "max_position_embeddings": 2048,
    "activation_function": "gelu",
    "scale_embedding": True,
    "layer_norm_eps": 1e-5,
}

SIZES: dict[str, dict[str, Any]] = {
    "kosmos-2": {"checkpoint": "microsoft/kosmos-2-patch14-224", "published_params": 1.66e9, "latents": 64},
}


def make_config(name: str, tokenizer: Any) -> Any:
    from transformers import Kosmos2Config

    if name == "kosmos-2-tiny":
        vision = {
            **_VISION,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        }
        text = {
            **_TEXT,
            "vocab_size": len(tokenizer),
            "embed_dim": 64,
            "layers": 2,
            "ffn_dim": 128,
            "attention_heads": 4,
            "max_position_embeddings": 512,
        }
        latents = 4
    else:
        vision, text, latents = dict(_VISION), dict(_TEXT), SIZES[name]["latents"]
    # dropout off: a feature backbone should be deterministic unless the caller trains it
    text.update(
        dropout=0.0,
        attention_dropout=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return Kosmos2Config(text_config=text, vision_config=vision, latent_query_num=latents)


class Kosmos2(HFVLM):
    """KosMos-2: CLIP tower → normalised → latent-query resampler → Magneto-style decoder."""

    family = "kosmos-2"
    model_types = ("kosmos-2",)
    specials = ("<image>", "</image>")
    image_mean = CLIP_MEAN
    image_std = CLIP_STD
    position_scheme = "sinusoidal"

    @classmethod
    def hf_class(cls) -> type:
        from transformers import Kosmos2ForConditionalGeneration

        return Kosmos2ForConditionalGeneration

    @property
    def position_start(self) -> int:  # the sinusoidal table reserves rows 0..pad for padding
        return int(self.text_config().pad_token_id) + 1

    @property
    def image_token_id(self) -> int:  # the first of the slots (the processor's `first_image_token_id`)
        return int(self.tokenizer.unk_token_id) + 1

    def _image_mask(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # slot ids are ordinary vocabulary ids, so the slots are found by position: between <image>
        # and </image> (which the instruction cannot contain: it is tokenised with specials split)
        boi, eoi = ids == self.special_id("<image>"), ids == self.special_id("</image>")
        inside = (boi.long().cumsum(-1) - eoi.long().cumsum(-1)) == 1
        return inside & ~boi & mask

    def tokens_per_view(self) -> int:
        return int(self.hf.config.latent_query_num)

    def _image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self.hf.vision_model(pixel_values=pixels.to(self.dtype))
        feats = F.normalize(self.hf.vision_model.model.post_layernorm(out.last_hidden_state), dim=-1)
        feats, _ = self.hf.image_to_text_projection(feats)
        return feats, {}

    def _prompt(self, text_ids: list[int], num_views: int) -> list[int]:
        boi, eoi = self.special_id("<image>"), self.special_id("</image>")
        slots = list(range(self.image_token_id, self.image_token_id + self.tokens_per_view()))
        return [self.tokenizer.bos_token_id] + ([boi, *slots, eoi] * num_views) + list(text_ids)

    def _language(self, embeds, mask, positions, cache, use_cache, extras) -> tuple[torch.Tensor, Any]:
        if extras.get("prefix_lm_mask") is not None:
            return self._prefix_lm_language(embeds, positions, use_cache, extras["prefix_lm_mask"])
        out = self.hf.text_model.model(
            inputs_embeds=embeds,
            attention_mask=mask.long(),
            position_ids=positions,
            past_key_values=cache,
            use_cache=use_cache,
        )
        return out.last_hidden_state, out.past_key_values

    def _prefix_lm_language(self, embeds, positions, use_cache, attn_mask) -> tuple[torch.Tensor, Any]:
        """The text transformer's own forward with a 4-D prefix-LM mask: it builds its mask from a
        2-D one and takes no other, so its embedding step, layers and final norm run here (its
        layerdrop, 0 in KosMos-2, is left out: a skipped layer would leave a hole in the cache)."""
        from transformers import DynamicCache

        text = self.hf.text_model.model
        cache = DynamicCache(config=text.config) if use_cache else None
        h = text.forward_embedding(input_ids=None, inputs_embeds=embeds, cache_length=0, position_ids=positions)
        h = F.dropout(h, p=text.dropout, training=text.training)
        for layer in text.layers:
            h = layer(h, attn_mask, cache=cache, use_cache=use_cache)
        return text.layer_norm(h), cache

    def part_modules(self) -> dict[str, list[nn.Module]]:
        return {
            "vision": [self.hf.vision_model],
            "projector": [self.hf.image_to_text_projection],
            "language": [self.hf.text_model],
        }

    def image_processor(self) -> Any:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        h, w = self.image_size
        return CLIPImageProcessorPil(
            size={"height": h, "width": w}, do_center_crop=False, image_mean=list(self.mean), image_std=list(self.std)
        )


def _factory(name: str):
    return variant_builder(Kosmos2, name, make_config, SIZES)


kosmos_2 = _factory("kosmos-2")
kosmos_2_tiny = _factory("kosmos-2-tiny")
