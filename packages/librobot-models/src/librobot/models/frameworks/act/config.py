"""Config of the ACT framework."""

from __future__ import annotations

from dataclasses import dataclass

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import choice
from librobot.models.frameworks.config import VLAConfig

FEATURES = ("vlm", "vision", "resnet18")


@dataclass
class ACTConfig(VLAConfig):
    """ACT's defaults where they fit a CPU: chunk (horizon) 100, β (kl_weight) 10, latent 32, L1.

    hidden_dim/num_heads/feedforward_dim/dropout: every transformer (ACT: 512 / 8 / 3200 / 0.1;
    narrower here so the zoo trains on a CPU; the depths are ACT's). cvae_layers: the style encoder over
    [CLS, state, actions]; encoder_layers: the encoder over [z, state, observation tokens] (ACT: 4);
    decoder_layers: the H-query decoder (ACT builds 7 but, through a known quirk, uses only the
    first; 1 here). features: "vlm" = the VLM's output tokens of one pass (its image tokens and the
    instruction's tokens, contextualised); "vision" = ``vlm.encode_image`` alone, language-free;
    "resnet18" = ACT's own backbone: a ResNet-18 (BatchNorm) per camera whose last feature map
    (stride 32) becomes tokens through a linear projection (ACT's 1x1 conv), the VLM unused. temporal_ensemble: run the policy as ACT evaluates it, a chunk
    predicted at every control step and the actions for each step averaged over every chunk that
    covers it with w_i = exp(−m·i) (i = 0 the oldest prediction), m = temporal_ensemble_coeff (ACT:
    0.01). The policy then recommends that execution (``execution``) to the runtime, closed-loop
    evaluation, the servers' info and ONNX exports. Off by default, as in LeRobot's ACT: it costs
    one inference per step instead of one per chunk."""

    horizon: int = 100
    hidden_dim: int = 128
    num_heads: int = 8
    feedforward_dim: int = 512
    dropout: float = 0.1
    cvae_layers: int = 4
    encoder_layers: int = 4
    decoder_layers: int = 1
    latent_dim: int = 32
    kl_weight: float = 10.0
    features: str = "vlm"
    temporal_ensemble: bool = False
    temporal_ensemble_coeff: float = 0.01

    def validate(self) -> None:
        super().validate()
        name = "ACTConfig"
        for key in (
            "hidden_dim",
            "num_heads",
            "feedforward_dim",
            "cvae_layers",
            "encoder_layers",
            "decoder_layers",
            "latent_dim",
        ):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name}.{key} must be a positive int, got {value!r}")
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"{name}.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{name}.dropout must be in [0, 1), got {self.dropout}")
        if self.kl_weight < 0:
            raise ConfigError(f"{name}.kl_weight must be >= 0, got {self.kl_weight}")
        if (
            not isinstance(self.temporal_ensemble_coeff, (int, float))
            or self.temporal_ensemble_coeff != self.temporal_ensemble_coeff
        ):
            raise ConfigError(
                f"{name}.temporal_ensemble_coeff must be a finite number, got {self.temporal_ensemble_coeff!r}"
            )
        if not isinstance(self.temporal_ensemble, bool):
            raise ConfigError(f"{name}.temporal_ensemble must be true or false, got {self.temporal_ensemble!r}")
        choice(name, "features", self.features, FEATURES)
