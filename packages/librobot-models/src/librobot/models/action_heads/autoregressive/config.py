"""Config of the autoregressive token head (uniform bins as RT-2/OpenVLA, or FAST)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import HeadConfig, choice, positive


@dataclass
class AutoregressiveConfig(HeadConfig):
    """tokenizer: "uniform" (``num_bins`` equal bins over [-1, 1] per action coordinate, H·A tokens,
    built in) or the name of an ``ActionTokenizerInterface`` in the "tokenizer" registry ("fast":
    DCT + quantisation + BPE, from librobot-data) or "package.module:Class". tokenizer_state: its
    ``to_dict()`` (a fitted FAST tokenizer), rebuilt with ``from_dict``; tokenizer_kwargs: used to
    create it when there is no state. max_tokens: longest token sequence of a variable-length
    tokenizer (default H·A); generation stops at end-of-sequence or there.
    temperature: 0 = greedy decoding; > 0 samples (needed to reproduce multimodal data). top_k: 0 = all.
    """

    tokenizer: str = "uniform"
    num_bins: int = 256
    tokenizer_kwargs: dict[str, Any] = field(default_factory=dict)
    tokenizer_state: dict[str, Any] | None = None
    max_tokens: int | None = None
    hidden_dim: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp: str = "gelu"
    dropout: float = 0.0
    temperature: float = 0.0
    top_k: int = 0

    head_target = "librobot.models.action_heads.autoregressive.model:AutoregressiveHead"

    def validate(self) -> None:
        super().validate()
        name = "AutoregressiveConfig"
        positive(name, num_bins=self.num_bins, hidden_dim=self.hidden_dim, depth=self.depth, num_heads=self.num_heads)
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"{name}.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise ConfigError(f"{name}.max_tokens must be > 0 or None, got {self.max_tokens}")
        if self.temperature < 0 or self.top_k < 0:
            raise ConfigError(f"{name}.temperature and top_k must be >= 0, got {self.temperature}, {self.top_k}")
        choice(name, "mlp", self.mlp, ("gelu", "gelu_tanh", "relu", "silu", "swiglu", "geglu"))
        if not isinstance(self.tokenizer_kwargs, dict) or (
            self.tokenizer_state is not None and not isinstance(self.tokenizer_state, dict)
        ):
            raise ConfigError(
                f"{name}.tokenizer_kwargs and tokenizer_state must be dicts (tokenizer_state may be None)"
            )

    @property
    def sequence_length(self) -> int:
        """Tokens generated per chunk (without the end-of-sequence token)."""
        if self.tokenizer == "uniform":
            return self.horizon * self.action_dim
        return self.max_tokens or self.horizon * self.action_dim
