"""Config of the ACT head (transformer CVAE, Zhao et al. 2023)."""

from __future__ import annotations

from dataclasses import dataclass

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import HeadConfig, choice, positive


@dataclass
class ACTConfig(HeadConfig):
    """hidden_dim/num_heads/encoder_depth/decoder_depth: the CVAE encoder (training only) and the
    decoder (learned chunk queries cross-attending to [latent, conditioning tokens]).
    latent_dim: style variable z; kl_weight: β of the KL term (ACT uses 10). loss: "l1" (ACT) or "mse".
    """

    hidden_dim: int = 256
    num_heads: int = 8
    encoder_depth: int = 2
    decoder_depth: int = 2
    latent_dim: int = 32
    kl_weight: float = 10.0
    loss: str = "l1"
    mlp: str = "gelu"
    dropout: float = 0.0

    head_target = "librobot.models.action_heads.act.model:ACTHead"

    def validate(self) -> None:
        super().validate()
        name = "ACTConfig"
        positive(
            name,
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            encoder_depth=self.encoder_depth,
            decoder_depth=self.decoder_depth,
            latent_dim=self.latent_dim,
        )
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"{name}.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.kl_weight < 0:
            raise ConfigError(f"{name}.kl_weight must be >= 0, got {self.kl_weight}")
        choice(name, "loss", self.loss, ("l1", "mse"))
