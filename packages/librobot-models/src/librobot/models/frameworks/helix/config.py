"""Config of the Helix-style framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import choice, positive
from librobot.models.frameworks.config import VLAConfig


@dataclass
class HelixConfig(VLAConfig):
    """System 2: ``num_latents`` learned query tokens appended to the VLM's prefix are read out as
    the latent [B, num_latents, latent_dim].
    System 1: ``image_encoder`` (a registered encoder: "resnet", "resnet18", "vit") built with
    ``image_encoder_options`` and output width ``s1_dim`` (token output: ``pool: tokens``), its
    tokens per camera (``max_cameras``), a state token and the latent tokens go through an
    ``s1_depth``-layer transformer; ``s1_image_size`` > 0 resizes frames first (ViTs need it).
    head_type: "mlp_oft" (default: one deterministic pass per control step, like Helix's S1
    regression) or "flow_matching" (multimodal demonstrations, ``num_inference_steps`` passes).
    latent_delay: training augmentation — S2 reads a frame up to this many steps older than S1's
    (uniform per sample), as at run time S2's latent lags the control loop; needs n_obs_steps >
    latent_delay frames of history in the batch."""

    num_latents: int = 4
    latent_dim: int = 64
    latent_delay: int = 0
    s1_dim: int = 128
    s1_depth: int = 2
    s1_heads: int = 4
    max_cameras: int = 4
    s1_image_size: int = 0
    image_encoder: str = "resnet"
    image_encoder_options: dict[str, Any] = field(
        default_factory=lambda: {"layers": [1, 1, 1], "widths": [16, 32, 64], "pool": "tokens", "norm": "group"}
    )
    head_type: str = "mlp_oft"

    def validate(self) -> None:
        super().validate()
        name = "HelixConfig"
        positive(
            name,
            num_latents=self.num_latents,
            latent_dim=self.latent_dim,
            s1_dim=self.s1_dim,
            s1_depth=self.s1_depth,
            s1_heads=self.s1_heads,
            max_cameras=self.max_cameras,
        )
        if self.s1_dim % self.s1_heads:
            raise ConfigError(f"{name}.s1_dim ({self.s1_dim}) must be divisible by s1_heads ({self.s1_heads})")
        if not isinstance(self.latent_delay, int) or self.latent_delay < 0:
            raise ConfigError(f"{name}.latent_delay must be an int >= 0, got {self.latent_delay!r}")
        if self.latent_delay >= self.n_obs_steps:
            raise ConfigError(
                f"{name}.latent_delay={self.latent_delay} needs {self.latent_delay + 1} frames of history; "
                f"set n_obs_steps >= {self.latent_delay + 1}"
            )
        if self.s1_image_size < 0:
            raise ConfigError(f"{name}.s1_image_size must be >= 0 (0 = frames as given), got {self.s1_image_size}")
        choice(name, "head_type", self.head_type, ("mlp_oft", "flow_matching"))
        if not isinstance(self.image_encoder_options, dict):
            raise ConfigError(f"{name}.image_encoder_options must be a mapping, got {self.image_encoder_options!r}")
