"""Config of the RoboVLMs-style framework."""

from __future__ import annotations

from dataclasses import dataclass, field

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import choice
from librobot.models.frameworks.config import VLAConfig


@dataclass
class RoboVLMsConfig(VLAConfig):
    """n_obs_steps: frames of history read per sample (the latest ``n_obs_steps`` of those given;
    fewer are fine, e.g. at an episode's start). step_feature: "act_token" (a learnable [ACT]
    embedding appended after each frame's prompt; its hidden state is the step's feature, as
    RoboVLMs' policy-head formulation) or "pooled" (masked mean of the VLM's hidden states).
    history: "lstm" / "transformer" (registered history encoders fusing the steps) or "none" (the
    decoder reads the per-step features directly). history_dim: width of the fused features.
    decoder: "fc", "lstm" or "gpt" (the registered RoboVLMs decoders "fc_decoder", "lstm_decoder",
    "gpt_decoder"); FC reads the fused vector, LSTM/GPT the per-step sequence.
    action_space: "continuous" (pose MSE + gripper BCE on ``gripper_dims``, weight
    ``gripper_weight``) or "discrete" (``num_bins`` uniform bins per coordinate over [-1, 1],
    cross-entropy; the decoder emits one logit per bin). gripper_dims is empty by default: only say
    which coordinates are open/close commands in [-1, 1] when they are."""

    horizon: int = 10
    n_obs_steps: int = 4
    step_feature: str = "act_token"
    history: str = "lstm"
    history_dim: int = 256
    decoder: str = "fc"
    action_space: str = "continuous"
    num_bins: int = 256
    gripper_dims: list[int] = field(default_factory=list)
    gripper_weight: float = 0.1

    def validate(self) -> None:
        super().validate()
        name = "RoboVLMsConfig"
        choice(name, "step_feature", self.step_feature, ("act_token", "pooled"))
        choice(name, "history", self.history, ("lstm", "transformer", "none"))
        choice(name, "decoder", self.decoder, ("fc", "lstm", "gpt"))
        choice(name, "action_space", self.action_space, ("continuous", "discrete"))
        if not isinstance(self.history_dim, int) or self.history_dim <= 0:
            raise ConfigError(f"{name}.history_dim must be a positive int, got {self.history_dim!r}")
        if not isinstance(self.num_bins, int) or self.num_bins < 2:
            raise ConfigError(f"{name}.num_bins must be an int >= 2, got {self.num_bins!r}")
        if self.action_space == "discrete" and self.gripper_dims:
            raise ConfigError(
                f"{name}.gripper_dims applies to the continuous action space; discrete bins treat every coordinate alike"
            )
