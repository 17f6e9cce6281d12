"""The chunk denoisers shared by diffusion and flow-matching heads, built by ``make_denoiser``
from ``DenoiserConfig.denoiser``: "dit" (here) or "unet" (Diffusion Policy's 1-D U-Net,
``unet1d.py``).

The DiT is a small transformer over the H action tokens. Time and pooled conditioning enter
through adaLN-Zero; conditioning tokens through cross-attention, whose keys/values are computed
once per ``predict`` and reused at every denoising step (``prepare``), the reference path being
``prepare`` per step (``cache_cond=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from librobot.models.action_heads.base import Conditioning
from librobot.models.action_heads.config import DenoiserConfig
from librobot.models.components.attention import KVCache
from librobot.models.components.conditioning import AdaLNModulation, modulate
from librobot.models.components.positional import TimestepEmbedding
from librobot.models.components.transformer import Transformer

if TYPE_CHECKING:
    from librobot.models.action_heads.unet1d import UNet1DDenoiser


@dataclass
class PreparedCond:
    pooled: Tensor  # [B, hidden] projected pooled conditioning
    context_kv: list[KVCache] | None  # per-layer cross-attention keys/values
    mask: Tensor | None


class ChunkDenoiser(nn.Module):
    """f(x_t [B, H, A], t [B], cond) → [B, H, A] (ε, velocity or EDM's F, depending on the head).

    ``time_scale`` maps the head's time variable to the sinusoidal embedding's useful range
    (integer diffusion steps: 1; flow t ∈ [0, 1]: 1000; EDM's c_noise = ln σ / 4: 250).
    """

    def __init__(self, config: DenoiserConfig, *, time_scale: float = 1.0) -> None:
        super().__init__()
        c = config
        self.cross_attention = c.cross_attention
        self.inp = nn.Linear(c.action_dim, c.hidden_dim)
        self.pos = nn.Parameter(torch.randn(1, c.horizon, c.hidden_dim) * 0.02)
        self.time = TimestepEmbedding(c.hidden_dim, scale=time_scale)
        self.cond_proj = nn.Sequential(
            nn.Linear(c.cond_dim, c.hidden_dim), nn.SiLU(), nn.Linear(c.hidden_dim, c.hidden_dim)
        )
        self.blocks = Transformer(
            c.hidden_dim,
            c.depth,
            c.num_heads,
            mlp=c.mlp,
            cond_dim=c.hidden_dim,
            final_norm=False,
            cross_attention=c.cross_attention,
            context_dim=c.cond_dim,
            dropout=c.dropout,
        )
        self.final_norm = nn.LayerNorm(c.hidden_dim, elementwise_affine=False)
        self.final_mod = AdaLNModulation(c.hidden_dim, c.hidden_dim, 2)
        self.out = nn.Linear(c.hidden_dim, c.action_dim)
        nn.init.zeros_(self.out.weight)  # DiT: start by predicting zero
        nn.init.zeros_(self.out.bias)

    def prepare(self, cond: Conditioning) -> PreparedCond:
        kv = self.blocks.context_kv(cond.tokens) if self.cross_attention else None
        return PreparedCond(self.cond_proj(cond.pooled), kv, cond.mask)

    def forward(self, x: Tensor, t: Tensor, prepared: PreparedCond) -> Tensor:
        c = prepared.pooled + self.time(t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t)
        h = self.inp(x) + self.pos.to(x.dtype)
        if self.cross_attention:
            h = self.blocks(h, cond=c, context_kv=prepared.context_kv, context_mask=prepared.mask)
        else:
            h = self.blocks(h, cond=c)
        shift, scale = self.final_mod(c)
        return self.out(modulate(self.final_norm(h), shift, scale))


def make_denoiser(config: DenoiserConfig, *, time_scale: float = 1.0) -> ChunkDenoiser | UNet1DDenoiser:
    """The denoiser ``config.denoiser`` names, with ``prepare(cond)`` and ``forward(x, t, prepared)``.

    ``time_scale``: see ``ChunkDenoiser`` (both denoisers read it the same way).
    """
    if config.denoiser == "unet":
        # imported here: unet1d imports PreparedCond from this module
        from librobot.models.action_heads.unet1d import UNet1DDenoiser

        return UNet1DDenoiser(config, time_scale=time_scale)
    return ChunkDenoiser(config, time_scale=time_scale)
