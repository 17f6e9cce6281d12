"""A prefix-LM transformer over already-embedded tokens, shared by the built-in backbones.

The tiny VLM's language model and the pretrained-small backbone's fusion layers are this module: a
stack of ``librobot.models.components`` blocks (RMSNorm, SwiGLU, grouped-query attention with RoPE,
attention math in ``librobot.kernels``). The prefix (left-padded) is one bidirectional block; an
optional suffix sees the whole prefix and earlier suffix tokens, never the other way round, so the
per-layer keys/values of a prefix pass can be cached and reused exactly (``extend``). With
``suffix_bidirectional`` the suffix is one block instead (every suffix token sees every other one),
still unseen by the prefix.
"""

from __future__ import annotations

import torch
from torch import nn

from librobot.models.components import Transformer
from librobot.models.components.capture import exporting
from librobot.models.vlm.base import VLMOutput
from librobot.models.vlm.kv_cache import KVLayout, PrefixKV, left_padded_positions


class PrefixLM(nn.Module):
    def __init__(
        self, dim: int, depth: int, heads: int, kv_heads: int, *, mlp_ratio: float = 3.0, rope_theta: float = 10000.0
    ) -> None:
        super().__init__()
        self.transformer = Transformer(
            dim,
            depth,
            heads,
            num_kv_heads=kv_heads,
            mlp="swiglu",
            mlp_ratio=mlp_ratio,
            norm="rmsnorm",
            rope=True,
            rope_theta=rope_theta,
        )
        self.layout = KVLayout(
            num_layers=depth,
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=dim // heads,
            hidden_size=dim,
            position_scheme="rope",
            rope_theta=rope_theta,
            prefix_attention="bidirectional",
        )

    def forward(
        self,
        embeds: torch.Tensor,
        mask: torch.Tensor,
        image_mask: torch.Tensor,
        suffix_embeds: torch.Tensor | None = None,
        suffix_mask: torch.Tensor | None = None,
        return_kv: bool = False,
        suffix_bidirectional: bool = False,
    ) -> VLMOutput:
        """Prefix embeds/mask/image_mask [B, L(, D)] (+ validated suffix) → ``VLMOutput``."""
        b, length = mask.shape
        positions = left_padded_positions(mask)
        next_position = positions.masked_fill(~mask, -1).amax(-1) + 1
        blocks = None  # a prefix alone is one bidirectional block: no mask needed
        if suffix_embeds is not None:
            assert suffix_mask is not None
            s = suffix_mask.shape[1]
            own = torch.arange(1, s + 1, device=mask.device).expand(b, s)
            embeds = torch.cat([embeds, suffix_embeds.to(embeds.dtype)], dim=1)
            mask = torch.cat([mask, suffix_mask], dim=1)
            image_mask = torch.cat([image_mask, torch.zeros_like(suffix_mask)], dim=1)
            positions = torch.cat([positions, next_position[:, None] + own - 1], dim=1)
            # block ids: prefix 0, suffix token k → k + 1 (causal) or all 1 (one block); key j is
            # visible iff its block <= the query's
            suffix_blocks = torch.ones_like(own) if suffix_bidirectional else own
            blocks = torch.cat([torch.zeros(b, length, dtype=torch.long, device=mask.device), suffix_blocks], dim=1)
        hidden, caches = self.transformer(
            embeds,
            key_padding_mask=mask if exporting() or not bool(mask.all()) else None,
            positions=positions,
            q_blocks=blocks,
            kv_blocks=blocks,
            return_kv=True,
        )
        hidden = hidden.masked_fill(~mask[..., None], 0.0)
        kv = None
        if return_kv:
            kv = PrefixKV(
                keys=tuple(k[:, :, :length] for k, _ in caches),
                values=tuple(v[:, :, :length] for _, v in caches),
                attention_mask=mask[:, :length],
                next_position=next_position,
                layout=self.layout,
            )
        return VLMOutput(hidden, mask, image_mask, kv, length)

    def extend(
        self, prefix_kv: PrefixKV, suffix_embeds: torch.Tensor, suffix_mask: torch.Tensor, return_kv: bool = False
    ) -> VLMOutput:
        """Suffix hidden states attending to a cached prefix (equal to the suffix part of ``forward``);
        with ``return_kv`` also the cache grown by the suffix."""
        b, s = suffix_mask.shape
        own = torch.arange(1, s + 1, device=suffix_mask.device).expand(b, s)
        positions = prefix_kv.next_position[:, None] + own - 1
        kv_blocks = torch.cat([torch.zeros_like(prefix_kv.attention_mask, dtype=torch.long), own], dim=1)
        hidden, caches = self.transformer(
            suffix_embeds,
            key_padding_mask=suffix_mask,
            positions=positions,
            past_kv=list(prefix_kv.to_legacy()),
            past_padding_mask=prefix_kv.attention_mask,
            q_blocks=own,
            kv_blocks=kv_blocks,
            return_kv=True,
        )
        hidden = hidden.masked_fill(~suffix_mask[..., None], 0.0)
        kv = None
        if return_kv:
            kv = prefix_kv.appended(tuple(k for k, _ in caches), tuple(v for _, v in caches), suffix_mask)
        return VLMOutput(hidden, suffix_mask, torch.zeros_like(suffix_mask), kv, 0)
