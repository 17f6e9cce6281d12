"""Config of the Octo-style framework."""

from __future__ import annotations

from dataclasses import dataclass

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import choice, positive
from librobot.models.frameworks.config import VLAConfig

HEADS = ("diffusion", "ddpm", "ddim", "edm", "flow_matching")


@dataclass
class OctoConfig(VLAConfig):
    """n_obs_steps: the history window T_obs (Octo uses 2); shorter histories are padded and the
    padded frames masked out. hidden_dim / depth / num_heads / mlp_ratio: the block-wise
    transformer. num_readouts: readout tokens per frame (Octo: 1). max_obs_tokens: size of the
    learned per-slot position table of a frame's observation tokens (cameras × image tokens + 1
    state token must fit); 0 = room for 4 cameras of the backbone's image tokens. head_type: the
    head on the last frame's readouts — "diffusion" (Octo's choice; DDIM sampling by default),
    "ddpm", "ddim", "edm" or "flow_matching"."""

    n_obs_steps: int = 2
    hidden_dim: int = 128
    depth: int = 3
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_readouts: int = 1
    max_obs_tokens: int = 0
    head_type: str = "diffusion"

    def validate(self) -> None:
        super().validate()
        name = "OctoConfig"
        positive(
            name,
            hidden_dim=self.hidden_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            num_readouts=self.num_readouts,
        )
        if not isinstance(self.max_obs_tokens, int) or self.max_obs_tokens < 0:
            raise ConfigError(f"{name}.max_obs_tokens must be an int >= 0 (0 = derived from the backbone)")
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"{name}.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        choice(name, "head_type", self.head_type, HEADS)
