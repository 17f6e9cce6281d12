"""The π0 action expert: a transformer with its own weights over the suffix tokens (state, noisy
actions) whose layer i attends to the VLM's layer-i prefix keys/values plus its own.

It takes the backbone's attention geometry (layers, query/KV heads, head size, rotary base) from
the ``KVLayout`` and only its residual width and feed-forward are its own, so it can be much
narrower than the VLM while sharing every attention layer with it (π0: Gemma 2B + a 300M expert).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from librobot.models.components.attention import KVCache
from librobot.models.components.capture import exporting
from librobot.models.components.transformer import Transformer
from librobot.models.vlm.kv_cache import KVLayout, PrefixKV

ROTARY_SCHEMES = ("rope", "mrope")  # M-RoPE with equal t/h/w positions (text after the prefix) is 1-D RoPE


@dataclass
class ExpertCache:
    """Per-layer keys/values the expert attends to: the VLM prefix, plus any suffix tokens already
    run (``suffix_len``, e.g. the state token, cached once per observation)."""

    kv: list[KVCache]  # layer i: (k, v) [B, H_kv, L, D_head], keys already position-encoded
    mask: Tensor  # [B, L] bool, True = real token
    next_position: Tensor  # [B] position of the first suffix token
    suffix_len: int = 0

    @classmethod
    def from_prefix(cls, prefix: PrefixKV, dtype: torch.dtype) -> ExpertCache:
        kv = [(k.to(dtype), v.to(dtype)) for k, v in prefix.to_legacy()]
        return cls(kv, prefix.attention_mask.bool(), prefix.next_position, 0)

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])


class ActionExpert(nn.Module):
    """Suffix tokens [B, S, width] → hidden states [B, S, width] attending to an ``ExpertCache``."""

    def __init__(self, layout: KVLayout, width: int, *, mlp: str, mlp_ratio: float, max_tokens: int) -> None:
        super().__init__()
        self.layout, self.width = layout, int(width)
        rotary = layout.position_scheme in ROTARY_SCHEMES
        self.blocks = Transformer(
            self.width,
            layout.num_layers,
            layout.num_heads,
            num_kv_heads=layout.num_kv_heads,
            head_dim=layout.head_dim,
            mlp=mlp,
            mlp_ratio=mlp_ratio,
            norm="rmsnorm",
            rope=rotary,
            rope_theta=layout.rope_theta or 10000.0,
        )
        # Backbones with learned/sinusoidal positions bake them into the prefix keys; the suffix
        # then needs positions of its own, which a learned table over suffix slots provides.
        self.pos = None if rotary else nn.Parameter(torch.randn(max_tokens, self.width) * 0.02)

    def forward(
        self,
        x: Tensor,
        cache: ExpertCache,
        *,
        q_blocks: Tensor | None = None,
        kv_blocks: Tensor | None = None,
        return_kv: bool = False,
    ) -> Tensor | tuple[Tensor, list[KVCache]]:
        """``x`` holds suffix tokens ``cache.suffix_len`` … ``+ S − 1``; without blocks they see the
        whole cache and each other (bidirectionally)."""
        s = x.shape[1]
        slots = torch.arange(cache.suffix_len, cache.suffix_len + s, device=x.device)
        if self.pos is not None:
            x = x + self.pos[slots].to(x.dtype)
        positions = cache.next_position.to(x.device)[:, None] + slots[None]
        mask = cache.mask if exporting() or not bool(cache.mask.all()) else None
        return self.blocks(
            x,
            past_kv=cache.kv,
            past_padding_mask=mask,
            positions=positions,
            q_blocks=q_blocks,
            kv_blocks=kv_blocks,
            return_kv=return_kv,
        )

    def extend(self, cache: ExpertCache, x: Tensor) -> ExpertCache:
        """The cache with tokens ``x`` appended (they see the cache and each other), e.g. the state
        token: its keys/values do not depend on the actions, so they are computed once."""
        _, kv = self.forward(x, cache, return_kv=True)
        ones = torch.ones(x.shape[0], x.shape[1], dtype=torch.bool, device=cache.mask.device)
        return ExpertCache(
            list(kv), torch.cat([cache.mask, ones], dim=1), cache.next_position, cache.suffix_len + x.shape[1]
        )


def time_features(t: Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> Tensor:
    """π0's sine-cosine embedding of the flow time t ∈ [0, 1]: periods from ``min_period`` to
    ``max_period`` (geometric), so both coarse and fine differences in t are resolved. [B] → [B, dim]."""
    half = dim // 2
    fraction = torch.linspace(0.0, 1.0, half, dtype=torch.float64, device=t.device)
    period = min_period * (max_period / min_period) ** fraction
    angle = t.to(torch.float64)[:, None] * (2 * torch.pi / period)[None]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)
