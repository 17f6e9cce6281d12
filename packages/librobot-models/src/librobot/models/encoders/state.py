"""Proprioceptive state encoders: an MLP, and a transformer over per-dimension or per-step tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from librobot.models.components.mlp import MLP
from librobot.models.components.transformer import Transformer
from librobot.models.encoders.base import EncoderBase


class MLPStateEncoder(EncoderBase):
    """state [B, S] → [B, output_dim], or [B, T, S] → [B, T, output_dim] (each step on its own)."""

    def __init__(
        self,
        state_dim: int,
        output_dim: int = 256,
        hidden_dims: Sequence[int] = (256,),
        activation: str = "gelu",
        layer_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self._record(locals())
        self.state_dim, self._output_dim = int(state_dim), int(output_dim)
        self.mlp = MLP(
            state_dim, list(hidden_dims), output_dim, activation=activation, dropout=dropout, layer_norm=layer_norm
        )

    def forward(self, x: Tensor) -> Tensor:
        self.check(x, "state", {2: "[B, S]", 3: "[B, T, S]"}, self.state_dim)
        return self.mlp(x)


class TransformerStateEncoder(EncoderBase):
    """A transformer over state tokens, pooled by a learned [CLS] token.

    [B, S]: one token per state dimension (value · w_s + b_s plus a learned identity per
    dimension, the FT-Transformer tokenizer), so the encoder can relate joints to each other.
    [B, T, S]: one token per time step (a linear embedding plus a learned step position).
    ``return_tokens=True`` returns the tokens (without [CLS]) projected to ``output_dim``.
    """

    def __init__(
        self,
        state_dim: int,
        output_dim: int = 256,
        hidden_dim: int = 128,
        depth: int = 2,
        num_heads: int = 4,
        max_steps: int = 64,
        mlp: str = "gelu",
        norm: str = "layernorm",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self._record(locals())
        self.state_dim, self._output_dim, self.max_steps = int(state_dim), int(output_dim), int(max_steps)
        self.dim_weight = nn.Parameter(torch.randn(state_dim, hidden_dim) * 0.02)
        self.dim_bias = nn.Parameter(torch.randn(state_dim, hidden_dim) * 0.02)
        self.step_proj = nn.Linear(state_dim, hidden_dim)
        self.step_pos = nn.Parameter(torch.randn(max_steps, hidden_dim) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, hidden_dim) * 0.02)
        self.encoder = Transformer(hidden_dim, depth, num_heads, mlp=mlp, norm=norm, dropout=dropout)
        self.out = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: Tensor, mask: Tensor | None = None, *, return_tokens: bool = False) -> Tensor:
        """``mask`` [B, T] (True = valid step) applies to the per-step layout."""
        self.check(x, "state", {2: "[B, S]", 3: "[B, T, S]"}, self.state_dim)
        if x.dim() == 2:
            tokens = x.unsqueeze(-1) * self.dim_weight + self.dim_bias
            self.check_mask(mask, (x.shape[0], self.state_dim))
        else:
            if x.shape[1] > self.max_steps:
                from librobot.core.errors import SpecError

                raise SpecError(
                    f"state history of {x.shape[1]} steps exceeds max_steps={self.max_steps}; raise max_steps"
                )
            tokens = self.step_proj(x) + self.step_pos[: x.shape[1]]
            self.check_mask(mask, tuple(x.shape[:2]))
        b = tokens.shape[0]
        tokens = torch.cat([self.cls.expand(b, -1, -1).to(tokens.dtype), tokens], dim=1)
        if mask is not None:
            mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=mask.device), mask], dim=1)
        h = self.encoder(tokens, key_padding_mask=mask)
        return self.out(h[:, 1:]) if return_tokens else self.out(h[:, 0])
