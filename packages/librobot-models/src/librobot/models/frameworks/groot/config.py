"""Config of the GR00T-style framework."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import choice
from librobot.models.frameworks.config import VLAConfig

# GR00T N1/N1.5's flow-matching settings (Isaac-GR00T FlowmatchingActionHead), applied under ``head``.
GR00T_FLOW: dict[str, Any] = {"time_sampling": "beta_gr00t", "num_inference_steps": 4}


@dataclass
class GR00TConfig(VLAConfig):
    """hidden_dim: width of the head's conditioning tokens (VLM tokens are projected to it).
    state_encoder: registered encoder for proprioception ("mlp_state", "transformer_state").
    head_type: "flow_matching" (GR00T N1) or "diffusion". The VLM is frozen by default.

    select_layer: read the output of language layer k (1-based; with the language model's final
    norm, i.e. transformers' ``hidden_states[k]`` once the layers above are gone) and drop layers
    k+1.. from the backbone: they are neither run nor kept nor saved. GR00T does this with its
    Eagle VLM (``select_layer=12``): middle-layer features gave it better policies and faster
    inference than the last layer. None (the default) reads the last layer: 12 is a choice for
    Eagle's LLM, deeper than some of our backbones (the tiny VLM has 3 layers); a value above the
    backbone's depth is an error that names the depth. See ``layers.py``.

    The flow-matching head takes GR00T's settings (``GR00T_FLOW``) unless ``head`` overrides them:
    time_sampling "beta_gr00t" (flow time from Beta(1.5, 1) scaled by s = 0.999, more training on
    noisy inputs, where the velocity is hardest to predict) and num_inference_steps 4 (GR00T's
    ``num_inference_timesteps``: near-straight flows integrate well in few Euler steps, which keeps
    inference at control rate). ``head={"time_sampling": "uniform", "num_inference_steps": 10}``
    gives the plain rectified flow this framework used before.

    Head size: GR00T N1.5's DiT has 16 layers at width 1024; the head here keeps the denoiser's
    defaults (3 layers at width 128), sized to train and run on a CPU and on small demonstration
    sets. ``head={"depth": 16, "hidden_dim": 1024, "num_heads": 16}`` builds GR00T's size.
    """

    freeze_vlm: bool = True
    hidden_dim: int = 128
    state_encoder: str = "mlp_state"
    head_type: str = "flow_matching"
    select_layer: int | None = None

    def validate(self) -> None:
        super().validate()
        choice("GR00TConfig", "head_type", self.head_type, ("flow_matching", "diffusion"))
        k = self.select_layer
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise ConfigError(
                f"GR00TConfig.select_layer must be a layer number >= 1 (or None for the last layer), got {k!r}"
            )

    def head_options(self) -> dict[str, Any]:
        """The head's options: GR00T's flow settings for a flow head, under ``head``'s overrides."""
        defaults = GR00T_FLOW if self.head_type == "flow_matching" else {}
        return {**defaults, **self.head}
