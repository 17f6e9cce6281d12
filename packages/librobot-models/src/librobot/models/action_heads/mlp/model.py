"""MLP head: the whole chunk in one pass (parallel decoding, OpenVLA-OFT), trained with L1.

Deterministic regression: on multimodal data it predicts (for L1) a per-coordinate median and
(for MSE) the mean, i.e. it averages modes; it is the fast baseline the generative heads beat.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from librobot.models.action_heads.base import ActionHeadBase, masked_mean
from librobot.models.action_heads.mlp.config import MLPHeadConfig


class _ResidualBlock(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class MLPHead(ActionHeadBase):
    config_class = MLPHeadConfig
    config: MLPHeadConfig

    def __init__(self, config: MLPHeadConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.net = nn.Sequential(
            nn.Linear(c.cond_dim, c.hidden_dim),
            *[_ResidualBlock(c.hidden_dim, c.dropout) for _ in range(c.num_blocks)],
            nn.LayerNorm(c.hidden_dim),
            nn.Linear(c.hidden_dim, c.horizon * c.action_dim),
        )

    def _chunk(self, pooled: Tensor) -> Tensor:
        return self.net(pooled).view(-1, self.horizon, self.action_dim)

    def forward(
        self,
        cond: Tensor,
        actions: Tensor,
        *,
        cond_mask: Tensor | None = None,
        action_is_pad: Tensor | None = None,
        generator=None,
    ) -> dict[str, Tensor]:
        c, valid = self._prep(cond, cond_mask, actions, action_is_pad)
        pred = self._chunk(c.pooled)
        err = (pred - actions).abs() if self.config.loss == "l1" else (pred - actions).pow(2)
        loss = masked_mean(err, valid)
        return {"loss": loss, self.config.loss: loss.detach()}

    @torch.no_grad()
    def predict(self, cond: Tensor, *, cond_mask: Tensor | None = None, generator=None, noise=None) -> Tensor:
        return self._chunk(self.condition(cond, cond_mask).pooled)
