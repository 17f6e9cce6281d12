"""Florence-2 backbones (DaViT tower + BART encoder-decoder): base (0.23B) and large (0.77B), and a
tiny config for tests.

Sizes follow the ``config.json`` files of microsoft/Florence-2-{base,large} (as converted to
transformers' format in florence-community/Florence-2-{base,large}); published parameter counts are
the 0.23B / 0.77B of the Florence-2 model cards. The backbone's hidden states are the BART
*encoder's* outputs over [577 image tokens, <s> instruction </s>], the sequence Florence-2's decoder
reads. The encoder is bidirectional over that prefix; suffix tokens attend to the whole prefix and
causally to each other, so prefix caching (each encoder layer's keys/values) is exact. The decoder
is kept in the model (it is part of the checkpoint) but not run.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from librobot.core.errors import ConfigError
from librobot.models.vlm.hf_base import HFVLM, variant_builder
from librobot.models.vlm.kv_cache import KVLayout, PrefixKV
from librobot.models.vlm.preprocess import IMAGENET_MEAN, IMAGENET_STD

_BART = {
    "model_type": "bart",
    "vocab_size": 51289,
    "max_position_embeddings": 1024,
    "activation_function": "gelu",
    "scale_embedding": False,
    "dropout": 0.1,
    "attention_dropout": 0.1,
}
_DAVIT = {
    "depths": [1, 1, 9, 1],
    "patch_size": [7, 3, 3, 3],
    "patch_stride": [4, 2, 2, 2],
    "patch_padding": [3, 1, 1, 1],
    "patch_prenorm": [False, True, True, True],
    "window_size": 12,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "max_position_embeddings": 50,
    "max_temporal_embeddings": 100,
}

SIZES: dict[str, dict[str, Any]] = {
    "florence-2-base": {
        "checkpoint": "microsoft/Florence-2-base",
        "published_params": 0.23e9,
        "vision": {
            **_DAVIT,
            "embed_dim": [128, 256, 512, 1024],
            "num_heads": [4, 8, 16, 32],
            "num_groups": [4, 8, 16, 32],
            "projection_dim": 768,
        },
        "text": {
            **_BART,
            "d_model": 768,
            "encoder_layers": 6,
            "decoder_layers": 6,
            "encoder_attention_heads": 12,
            "decoder_attention_heads": 12,
            "encoder_ffn_dim": 3072,
            "decoder_ffn_dim": 3072,
        },
    },
    "florence-2-large": {
        "checkpoint": "microsoft/Florence-2-large",
        "published_params": 0.77e9,
        "vision": {
            **_DAVIT,
            "embed_dim": [256, 512, 1024, 2048],
            "num_heads": [8, 16, 32, 64],
            "num_groups": [8, 16, 32, 64],
            "projection_dim": 1024,
        },
        "text": {
            **_BART,
            "d_model": 1024,
            "encoder_layers": 12,
            "decoder_layers": 12,
            "encoder_attention_heads": 16,
            "decoder_attention_heads": 16,
            "encoder_ffn_dim": 4096,
            "decoder_ffn_dim": 4096,
        },
    },
}


def make_config(name: str, tokenizer: Any) -> Any:
    from transformers import Florence2Config

    if name == "florence-2-tiny":
        vision = {
            **_DAVIT,
            "depths": [1, 1, 1, 1],
            "embed_dim": [16, 32, 48, 64],
            "num_heads": [1, 2, 3, 4],
            "num_groups": [1, 2, 3, 4],
            "window_size": 2,
            "projection_dim": 64,
            "drop_path_rate": 0.0,
        }
        text = {
            **_BART,
            "vocab_size": len(tokenizer),
            "d_model": 64,
            "encoder_layers": 2,
            "decoder_layers": 1,
            "encoder_attention_heads": 4,
            "decoder_attention_heads": 4,
            "encoder_ffn_dim": 128,
            "decoder_ffn_dim": 128,
            "max_position_embeddings": 256,
        }
    else:
        size = SIZES[name]
        vision, text = dict(size["vision"]), dict(size["text"])
    text.update(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
    )
    return Florence2Config(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>")
    )


class Florence2(HFVLM):
    """Florence-2: DaViT tower, projector with 2-D + temporal position embeddings, BART encoder."""

    family = "florence-2"
    model_types = ("florence2",)
    specials = ("<image>",)
    image_mean = IMAGENET_MEAN
    image_std = IMAGENET_STD
    position_scheme = "learned"
    prefix_attention = "bidirectional"

    @classmethod
    def hf_class(cls) -> type:
        from transformers import Florence2ForConditionalGeneration

        return Florence2ForConditionalGeneration

    def default_image_size(self) -> tuple[int, int]:
        return (768, 768)  # as trained: 24×24 + 1 tokens (the tiny variant passes its own size)

    def _check_image_size(self, size: tuple[int, int]) -> None:
        stride = 1
        for s in self.hf.config.vision_config.patch_stride:
            stride *= s
        if size[0] % stride or size[1] % stride:
            raise ConfigError(f"{self.variant}: image_size {tuple(size)} must be a multiple of {stride}")

    def tokens_per_view(self) -> int:
        stride = 1
        for s in self.hf.config.vision_config.patch_stride:
            stride *= s
        return (self.image_size[0] // stride) * (self.image_size[1] // stride) + 1  # + temporal token

    @property
    def encoder(self) -> nn.Module:
        return self.hf.model.language_model.encoder

    @property
    def language_layers(self) -> int:
        return len(self.encoder.layers)

    @property
    def kv_layout(self) -> KVLayout:
        tc = self.text_config()
        heads = int(tc.encoder_attention_heads)
        return KVLayout(
            num_layers=self.language_layers,
            num_heads=heads,
            num_kv_heads=heads,
            head_dim=int(tc.d_model) // heads,
            hidden_size=int(tc.d_model),
            position_scheme="learned",
            rope_theta=None,
            prefix_attention="bidirectional",
        )

    @property
    def embedding_dim(self) -> int:
        return int(self.text_config().d_model)

    def _image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.hf.model.get_image_features(pixels.to(self.dtype)).pooler_output, {}

    def _prompt(self, text_ids: list[int], num_views: int) -> list[int]:
        tok = self.tokenizer
        images = [self.image_token_id] * (self.tokens_per_view() * num_views)
        return [*images, tok.bos_token_id, *text_ids, tok.eos_token_id]

    def _language(self, embeds, mask, positions, cache, use_cache, extras) -> tuple[torch.Tensor, Any]:
        from transformers import DynamicCache

        enc = self.encoder
        table = enc.embed_positions
        h = enc.layernorm_embedding(embeds + F.embedding(positions + table.offset, table.weight).to(embeds.dtype))
        h = F.dropout(h, p=enc.dropout, training=enc.training)
        q, kv = h.shape[1], mask.shape[1]
        suffix = q if cache is not None else extras.get("suffix_length", 0)
        prefix_len = kv - suffix
        # keys of the prefix: visible to everyone; suffix keys: causal, or to every suffix query when the
        # suffix is one bidirectional block (never to prefix queries)
        q_abs = torch.arange(kv - q, kv, device=h.device)[:, None]
        k_abs = torch.arange(kv, device=h.device)[None, :]
        allowed = (k_abs < prefix_len) | (k_abs <= q_abs)
        if extras.get("suffix_attention") == "bidirectional":
            allowed = allowed | (q_abs >= prefix_len)
        allowed = allowed[None, None] & mask[:, None, None, :]
        allowed = allowed | (k_abs == q_abs)[None, None]  # padded rows see themselves, not nothing
        attn = self.text_config()._attn_implementation
        if attn == "eager":
            attn_mask = torch.zeros(allowed.shape, dtype=h.dtype, device=h.device)
            attn_mask = attn_mask.masked_fill(~allowed, torch.finfo(h.dtype).min)
        elif attn in (None, "sdpa"):
            attn_mask = allowed
        else:
            raise ConfigError(
                f"{self.variant}: attention '{attn}' cannot take the prefix/suffix mask; use sdpa or eager"
            )
        if cache is None and use_cache:
            cache = DynamicCache()
        for layer in enc.layers:
            h = layer(h, attn_mask, past_key_values=cache)
        return h, cache

    def _cache_from(self, prefix_kv: PrefixKV) -> Any:
        return prefix_kv.to_dynamic_cache(None)

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
            size={"height": h, "width": w}, do_center_crop=False, image_mean=list(self.mean), image_std=list(self.std)
        )


def _factory(name: str, default_size: int):
    return variant_builder(Florence2, name, make_config, SIZES, default_size)


florence_2_base = _factory("florence-2-base", 768)
florence_2_large = _factory("florence-2-large", 768)
florence_2_tiny = _factory("florence-2-tiny", 64)
