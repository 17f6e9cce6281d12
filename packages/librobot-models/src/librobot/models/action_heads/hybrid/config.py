"""Config of the hybrid head: discrete coarse chunk bins + continuous refinement (BeT-style)."""

from __future__ import annotations

from dataclasses import dataclass

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import HeadConfig, choice, positive


@dataclass
class HybridConfig(HeadConfig):
    """num_bins: K prototype chunks (k-means centres of the training chunks). A classifier picks a
    bin (the discrete, multimodal part); a regressor adds that bin's offset (the continuous part).
    online_kmeans: refine the centres during training with minibatch k-means (Sculley 2010),
    initialised by k-means++ on the first batch, unless ``fit_centers`` was called on data first.
    temperature: bin sampling at prediction (0 = most likely bin)."""

    num_bins: int = 16
    hidden_dim: int = 256
    num_layers: int = 2
    offset_loss: str = "l1"
    offset_weight: float = 10.0
    temperature: float = 1.0
    online_kmeans: bool = True
    dropout: float = 0.0

    head_target = "librobot.models.action_heads.hybrid.model:HybridHead"

    def validate(self) -> None:
        super().validate()
        name = "HybridConfig"
        positive(name, num_bins=self.num_bins, hidden_dim=self.hidden_dim, num_layers=self.num_layers)
        choice(name, "offset_loss", self.offset_loss, ("l1", "mse"))
        if self.offset_weight < 0 or self.temperature < 0:
            raise ConfigError(
                f"{name}.offset_weight and temperature must be >= 0, got {self.offset_weight}, {self.temperature}"
            )
