"""RoboVLMs decoders. All three output [B, H, A] where gripper coordinates are logits during
training (BCE against (a + 1) / 2) and ±1 at prediction; pose coordinates are regressed (MSE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from librobot.core.errors import SpecError
from librobot.models.action_heads.base import ActionHeadBase, Conditioning, masked_mean
from librobot.models.action_heads.robovlms.config import (
    FCDecoderConfig,
    GPTDecoderConfig,
    LSTMDecoderConfig,
    RoboVLMsConfig,
)
from librobot.models.components.capture import exporting
from librobot.models.components.positional import sinusoidal_embedding
from librobot.models.components.transformer import Transformer
from librobot.models.encoders.history import LSTMHistoryEncoder


class _RoboVLMsHead(ActionHeadBase):
    config: RoboVLMsConfig

    def __init__(self, config=None, **overrides) -> None:
        super().__init__(config, **overrides)
        grip = torch.zeros(self.action_dim, dtype=torch.bool)
        grip[self.config.gripper_indices] = True
        self.register_buffer("gripper_mask", grip, persistent=False)

    def raw(self, c: Conditioning) -> Tensor:
        raise NotImplementedError

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
        out = self.raw(c)
        grip = self.gripper_mask
        terms: dict[str, Tensor] = {}
        loss = out.new_zeros(())
        if bool((~grip).any()):
            pose = masked_mean((out[..., ~grip] - actions[..., ~grip]).pow(2), valid)
            loss, terms["pose_mse"] = loss + pose, pose.detach()
        if bool(grip.any()):
            target = actions[..., grip]
            if not exporting() and bool(((target < -1) | (target > 1)).any()):
                raise SpecError(
                    "gripper coordinates must lie in [-1, 1] (closed = -1, open = +1); check normalisation or gripper_dims"
                )
            bce = F.binary_cross_entropy_with_logits(out[..., grip], (target + 1) / 2, reduction="none")
            bce = masked_mean(bce, valid)
            loss, terms["gripper_bce"] = loss + self.config.gripper_weight * bce, bce.detach()
        return {"loss": loss, **terms}

    @torch.no_grad()
    def predict(self, cond: Tensor, *, cond_mask: Tensor | None = None, generator=None, noise=None) -> Tensor:
        out = self.raw(self.condition(cond, cond_mask))
        return torch.where(self.gripper_mask, torch.where(out > 0, 1.0, -1.0).to(out.dtype), out)


class FCDecoderHead(_RoboVLMsHead):
    """MLP on the pooled conditioning → the whole chunk."""

    config_class = FCDecoderConfig
    config: FCDecoderConfig

    def __init__(self, config: FCDecoderConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        c = self.config
        layers: list[nn.Module] = []
        width = c.cond_dim
        for _ in range(c.num_layers):
            layers += [nn.Linear(width, c.hidden_dim), nn.ReLU(), nn.Dropout(c.dropout)]
            width = c.hidden_dim
        self.net = nn.Sequential(*layers, nn.Linear(width, c.horizon * c.action_dim))

    def raw(self, c: Conditioning) -> Tensor:
        return self.net(c.pooled).view(-1, self.horizon, self.action_dim)


class LSTMDecoderHead(_RoboVLMsHead):
    """LSTM over the conditioning tokens (masked tokens skipped); final state → the chunk."""

    config_class = LSTMDecoderConfig
    config: LSTMDecoderConfig

    def __init__(self, config: LSTMDecoderConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.lstm = LSTMHistoryEncoder(
            c.cond_dim, output_dim=c.hidden_dim, hidden_dim=c.hidden_dim, num_layers=c.lstm_layers, dropout=c.dropout
        )
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(c.hidden_dim, c.horizon * c.action_dim))

    def raw(self, c: Conditioning) -> Tensor:
        return self.out(self.lstm(c.tokens, c.mask)).view(-1, self.horizon, self.action_dim)


class GPTDecoderHead(_RoboVLMsHead):
    """Causal transformer over [conditioning tokens, H learned action queries] (GPT-style)."""

    config_class = GPTDecoderConfig
    config: GPTDecoderConfig

    def __init__(self, config: GPTDecoderConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.inp = nn.Linear(c.cond_dim, c.hidden_dim)
        self.queries = nn.Parameter(torch.zeros(1, c.horizon, c.hidden_dim))
        self.pos = nn.Parameter(
            sinusoidal_embedding(
                torch.arange(c.max_cond_tokens + c.horizon, dtype=torch.float32), c.hidden_dim
            ).unsqueeze(0)
        )  # learned, sinusoidal start
        self.gpt = Transformer(c.hidden_dim, c.depth, c.num_heads, causal=True, dropout=c.dropout)
        self.out = nn.Linear(c.hidden_dim, c.action_dim)

    def raw(self, c: Conditioning) -> Tensor:
        b, length = c.tokens.shape[:2]
        if length > self.config.max_cond_tokens:
            raise SpecError(
                f"{length} conditioning tokens exceed max_cond_tokens={self.config.max_cond_tokens}; raise it in the config"
            )
        x = (
            torch.cat([self.inp(c.tokens), self.queries.expand(b, -1, -1)], dim=1)
            + self.pos[:, : length + self.horizon]
        )
        mask = None
        if c.mask is not None:
            mask = torch.cat([c.mask, torch.ones(b, self.horizon, dtype=torch.bool, device=c.mask.device)], dim=1)
        return self.out(self.gpt(x, key_padding_mask=mask)[:, length:])
