"""Perceiver resampler (Flamingo, Alayrac et al. 2022; used by RoboVLMs for KosMos/LLaVA): a fixed
number of learned latents cross-attend to a variable number of visual tokens, so the language
model sees ``num_latents`` tokens per observation whatever the image resolution or frame count."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from librobot.core.errors import SpecError
from librobot.models.components.attention import Attention
from librobot.models.components.mlp import FeedForward
from librobot.models.encoders.base import EncoderBase


class _ResamplerLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, ff_mult: float) -> None:
        super().__init__()
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, cross=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, mult=ff_mult)

    def forward(self, media: Tensor, latents: Tensor, mask: Tensor | None) -> Tensor:
        lat = self.norm_latents(latents)
        # Flamingo: keys/values are the media tokens *and* the latents themselves.
        kv = torch.cat([self.norm_media(media), lat], dim=1)
        if mask is not None:
            mask = torch.cat(
                [mask, torch.ones(mask.shape[0], lat.shape[1], dtype=torch.bool, device=mask.device)], dim=1
            )
        latents = latents + self.attn(lat, kv, key_padding_mask=mask)
        return latents + self.ff(self.norm_ff(latents))


class PerceiverResampler(EncoderBase):
    """[B, N, D] or [B, T, N, D] (T frames, each with a learned time embedding) → [B, num_latents, output_dim].

    ``mask`` ([B, N] or [B, T, N], True = real token) hides padded tokens.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int | None = None,
        num_latents: int = 64,
        depth: int = 2,
        num_heads: int = 8,
        ff_mult: float = 4.0,
        max_frames: int = 16,
    ) -> None:
        super().__init__()
        self._record(locals())
        self.input_dim, self.num_latents, self.max_frames = int(input_dim), int(num_latents), int(max_frames)
        self._output_dim = int(output_dim or input_dim)
        self.latents = nn.Parameter(torch.randn(num_latents, input_dim) * 0.02)
        self.time_emb = nn.Parameter(torch.zeros(max_frames, 1, input_dim))
        self.layers = nn.ModuleList(_ResamplerLayer(input_dim, num_heads, ff_mult) for _ in range(depth))
        self.norm = nn.LayerNorm(input_dim)
        self.out = nn.Linear(input_dim, self._output_dim) if self._output_dim != input_dim else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        self.check(x, "visual tokens", {3: "[B, N, D]", 4: "[B, T, N, D]"}, self.input_dim)
        if x.dim() == 3:
            x = x.unsqueeze(1)
            mask = None if mask is None else mask.unsqueeze(1)
        b, t, n, d = x.shape
        if t > self.max_frames:
            raise SpecError(f"{t} frames exceed max_frames={self.max_frames}; raise max_frames")
        self.check_mask(mask, (b, t, n))
        media = (x + self.time_emb[:t].to(x.dtype)).reshape(b, t * n, d)
        flat_mask = None if mask is None else mask.reshape(b, t * n)
        latents = self.latents.unsqueeze(0).expand(b, -1, -1).to(x.dtype)
        for layer in self.layers:
            latents = layer(media, latents, flat_mask)
        return self.out(self.norm(latents))
