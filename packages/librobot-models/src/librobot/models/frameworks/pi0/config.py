"""Config of the π0-style framework."""

from __future__ import annotations

from dataclasses import dataclass

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import choice, positive
from librobot.models.frameworks.config import VLAConfig

FLOW_KEYS = ("num_inference_steps", "time_sampling", "integrator")
PREFIX_ATTENTION = ("bidirectional", "native")


@dataclass
class Pi0Config(VLAConfig):
    """expert_width: width of the action expert's residual stream (0 = half the VLM's width, as
    π0's 300M Gemma expert beside its 2B VLM). Heads, KV heads, head size and depth are the VLM's,
    because expert layer i attends to the VLM's layer-i keys/values. expert_mlp / expert_mlp_ratio:
    the expert's feed-forward. num_inference_steps / integrator: flow sampling from t = 1 to 0.
    time_sampling: "beta" (π0: more mass at noisy t) or "uniform". ``head`` may override the three
    flow settings (``{"num_inference_steps": 5}``), as for the frameworks with a separate head.
    prefix_attention: "bidirectional" (π0's prefix-LM: image and instruction tokens all see each
    other, on every backbone; causal ones such as Qwen-VL, InternVL, LLaVA and KosMos-2 get a
    block mask) or "native" (the backbone's own prefix attention, causal on those backbones)."""

    expert_width: int = 0
    expert_mlp: str = "geglu"
    expert_mlp_ratio: float = 4.0
    num_inference_steps: int = 10
    time_sampling: str = "beta"
    integrator: str = "euler"
    prefix_attention: str = "bidirectional"

    def validate(self) -> None:
        super().validate()
        name = "Pi0Config"
        if not isinstance(self.expert_width, int) or self.expert_width < 0:
            raise ConfigError(
                f"{name}.expert_width must be an int >= 0 (0 = half the VLM width), got {self.expert_width!r}"
            )
        choice(name, "expert_mlp", self.expert_mlp, ("gelu", "gelu_tanh", "relu", "silu", "swiglu", "geglu"))
        positive(name, expert_mlp_ratio=self.expert_mlp_ratio)
        unknown = [k for k in self.head if k not in FLOW_KEYS]
        if unknown:
            raise ConfigError(
                f"{name}.head: π0 has no separate action head; only {', '.join(FLOW_KEYS)} may be overridden there, got {unknown}"
            )
        positive(name, num_inference_steps=self.flow("num_inference_steps"))
        choice(name, "time_sampling", self.flow("time_sampling"), ("beta", "uniform"))
        choice(name, "integrator", self.flow("integrator"), ("euler", "heun"))
        choice(name, "prefix_attention", self.prefix_attention, PREFIX_ATTENTION)

    def flow(self, key: str):
        """A flow setting, ``head`` overrides first."""
        return self.head.get(key, getattr(self, key))
