"""Config of the GR00T-style framework."""

from __future__ import annotations

from dataclasses import dataclass

from librobot.models.action_heads.config import choice
from librobot.models.frameworks.config import VLAConfig


@dataclass
class GR00TConfig(VLAConfig):
    """hidden_dim: width of the head's conditioning tokens (VLM tokens are projected to it).
    state_encoder: registered encoder for proprioception ("mlp_state", "transformer_state").
    head_type: "flow_matching" (GR00T N1) or "diffusion". The VLM is frozen by default."""

    freeze_vlm: bool = True
    hidden_dim: int = 128
    state_encoder: str = "mlp_state"
    head_type: str = "flow_matching"

    def validate(self) -> None:
        super().validate()
        choice("GR00TConfig", "head_type", self.head_type, ("flow_matching", "diffusion"))
