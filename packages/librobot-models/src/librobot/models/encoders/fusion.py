"""Fusion of two feature streams: cross-attention (queries attend to a context) and FiLM
(a conditioning vector scales and shifts features)."""

from __future__ import annotations

from torch import Tensor, nn

from librobot.models.components.conditioning import FiLM
from librobot.models.components.transformer import TransformerBlock
from librobot.models.encoders.base import EncoderBase


class CrossAttentionFusion(EncoderBase):
    """x [B, Dq] or [B, Lq, Dq] attends to context [B, Lc, Dc] (+ ``context_mask`` [B, Lc], True =
    real token) through ``depth`` pre-norm blocks (self-attn among queries, cross-attn, FF);
    output keeps x's rank with width ``output_dim`` (default Dq)."""

    def __init__(
        self,
        query_dim: int,
        context_dim: int,
        output_dim: int | None = None,
        num_heads: int = 4,
        depth: int = 1,
        mlp: str = "gelu",
        norm: str = "layernorm",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self._record(locals())
        self.query_dim, self.context_dim = int(query_dim), int(context_dim)
        self._output_dim = int(output_dim or query_dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                query_dim, num_heads, cross_attention=True, context_dim=context_dim, mlp=mlp, norm=norm, dropout=dropout
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(query_dim)
        self.out = nn.Linear(query_dim, self._output_dim) if self._output_dim != query_dim else nn.Identity()

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        self.check(x, "query", {2: "[B, Dq]", 3: "[B, Lq, Dq]"}, self.query_dim)
        self.check(context, "context", {3: "[B, Lc, Dc]"}, self.context_dim)
        self.check_mask(context_mask, tuple(context.shape[:2]), "context_mask")
        h = x.unsqueeze(1) if x.dim() == 2 else x
        for block in self.blocks:
            h = block(h, context=context, context_mask=context_mask)
        h = self.out(self.norm(h))
        return h.squeeze(1) if x.dim() == 2 else h


class FiLMFusion(EncoderBase):
    """features [B, ..., F] modulated by cond [B, C]: (1 + γ(c))·x + β(c) (identity at init),
    then optionally projected to ``output_dim``."""

    def __init__(self, feature_dim: int, cond_dim: int, output_dim: int | None = None) -> None:
        super().__init__()
        self._record(locals())
        self.feature_dim, self.cond_dim = int(feature_dim), int(cond_dim)
        self._output_dim = int(output_dim or feature_dim)
        self.film = FiLM(cond_dim, feature_dim)
        self.out = nn.Linear(feature_dim, self._output_dim) if self._output_dim != feature_dim else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        self.check(cond, "cond", {2: "[B, C]"}, self.cond_dim)
        if x.dim() < 2 or x.shape[-1] != self.feature_dim or x.shape[0] != cond.shape[0]:
            from librobot.core.errors import SpecError

            raise SpecError(
                f"features: expected [B, ..., {self.feature_dim}] with B={cond.shape[0]}, got {list(x.shape)}"
            )
        return self.out(self.film(x, cond))
