"""Configs of the RoboVLMs decoders (Li et al. 2024, "Towards Generalist Robot Policies"): FC,
LSTM and GPT-style heads with a pose MSE + gripper BCE loss."""

from __future__ import annotations

from dataclasses import dataclass, field

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import HeadConfig, positive


@dataclass
class RoboVLMsConfig(HeadConfig):
    """gripper_dims: action coordinates that are open/close commands in [-1, 1] (closed = −1,
    open = +1), trained with binary cross-entropy and predicted as ±1; the rest ("pose") use MSE.
    Default: the last coordinate (7-D end-effector actions). ``[]`` makes every coordinate pose.
    gripper_weight: weight of the BCE term (the seed's 0.1)."""

    hidden_dim: int = 256
    gripper_dims: list[int] = field(default_factory=lambda: [-1])
    gripper_weight: float = 0.1
    dropout: float = 0.0

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        positive(name, hidden_dim=self.hidden_dim)
        dims = [d % self.action_dim if -self.action_dim <= d < self.action_dim else None for d in self.gripper_dims]
        if None in dims or len(set(dims)) != len(dims):
            raise ConfigError(
                f"{name}.gripper_dims {self.gripper_dims} must be distinct indices into action_dim={self.action_dim}"
            )
        if self.gripper_weight < 0:
            raise ConfigError(f"{name}.gripper_weight must be >= 0, got {self.gripper_weight}")

    @property
    def gripper_indices(self) -> list[int]:
        return sorted(d % self.action_dim for d in self.gripper_dims)


@dataclass
class FCDecoderConfig(RoboVLMsConfig):
    """num_layers hidden ReLU layers on the pooled conditioning, then the whole chunk."""

    num_layers: int = 2

    head_target = "librobot.models.action_heads.robovlms.model:FCDecoderHead"

    def validate(self) -> None:
        super().validate()
        positive("FCDecoderConfig", num_layers=self.num_layers)


@dataclass
class LSTMDecoderConfig(RoboVLMsConfig):
    """An LSTM over the conditioning tokens in order (RoboVLMs' history of per-step features);
    its final state predicts the chunk."""

    lstm_layers: int = 2

    head_target = "librobot.models.action_heads.robovlms.model:LSTMDecoderHead"

    def validate(self) -> None:
        super().validate()
        positive("LSTMDecoderConfig", lstm_layers=self.lstm_layers)


@dataclass
class GPTDecoderConfig(RoboVLMsConfig):
    """A causal transformer over [conditioning tokens…, H action queries]: each query sees the whole
    history and the earlier queries. max_cond_tokens bounds the learned positions."""

    depth: int = 2
    num_heads: int = 4
    max_cond_tokens: int = 256

    head_target = "librobot.models.action_heads.robovlms.model:GPTDecoderHead"

    def validate(self) -> None:
        super().validate()
        positive("GPTDecoderConfig", depth=self.depth, num_heads=self.num_heads, max_cond_tokens=self.max_cond_tokens)
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"GPTDecoderConfig.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
