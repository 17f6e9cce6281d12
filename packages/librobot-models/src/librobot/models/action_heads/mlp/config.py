"""Config of the MLP (OFT-style parallel) head."""

from __future__ import annotations

from dataclasses import dataclass

from librobot.models.action_heads.config import HeadConfig, choice, positive


@dataclass
class MLPHeadConfig(HeadConfig):
    """hidden_dim/num_blocks: a residual MLP (pre-LayerNorm blocks, as OpenVLA-OFT's MLPResNet).
    loss: "l1" (OFT's choice: robust, sharp) or "mse"."""

    hidden_dim: int = 256
    num_blocks: int = 2
    loss: str = "l1"
    dropout: float = 0.0

    head_target = "librobot.models.action_heads.mlp.model:MLPHead"

    def validate(self) -> None:
        super().validate()
        positive("MLPHeadConfig", hidden_dim=self.hidden_dim, num_blocks=self.num_blocks)
        choice("MLPHeadConfig", "loss", self.loss, ("l1", "mse"))
