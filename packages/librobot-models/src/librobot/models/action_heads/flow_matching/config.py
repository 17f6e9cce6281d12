"""Config of the flow-matching head (rectified flow, OT-CFM)."""

from __future__ import annotations

from dataclasses import dataclass

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import DenoiserConfig, choice, positive


@dataclass
class FlowMatchingConfig(DenoiserConfig):
    """Path x_t = (1 − t)·x_data + t·noise (+ σ·ε), velocity target noise − x_data; sampling
    integrates from t = 1 (noise) to t = 0 (data) with ``integrator`` over ``num_inference_steps``.

    coupling: "independent" (rectified flow, Liu et al. 2023; π0) or "ot" (OT-CFM, Tong et al.
    2024: noise and data paired within the minibatch by optimal transport). ot_method: "exact"
    (Hungarian assignment via scipy, extra ``librobot-models[ot]``) or "sinkhorn" (entropic plan
    in torch, pairs sampled from it). ot_cond_weight: penalty for pairing across different
    conditionings (cost term on the normalised distance of pooled conditionings), keeping the
    coupling (approximately) conditional; 0 gives the unconditional OT-CFM.
    sigma: Gaussian width of the probability path (OT-CFM's σ; 0 for rectified flow).
    time_sampling: "uniform", "logit_normal" (SD3), "beta" (π0: t = 0.001 + 0.999·B) or "beta_gr00t"
    (GR00T N1: t = B / 0.999), B ~ Beta(1.5, 1): both put more mass near t = 1, i.e. noisy inputs.
    GR00T writes its time the other way round (τ = 1 at the data): τ = (s − B) / s with s = 0.999,
    so t = 1 − τ = B / s here, which reaches 1 / s (a touch past pure noise), as in GR00T.
    """

    coupling: str = "independent"
    ot_method: str = "exact"
    ot_cond_weight: float = 10.0
    sinkhorn_reg: float = 0.05
    sinkhorn_iters: int = 100
    sigma: float = 0.0
    time_sampling: str = "uniform"
    num_inference_steps: int = 10
    integrator: str = "euler"

    head_target = "librobot.models.action_heads.flow_matching.model:FlowMatchingHead"

    def validate(self) -> None:
        super().validate()
        name = "FlowMatchingConfig"
        choice(name, "coupling", self.coupling, ("independent", "ot"))
        choice(name, "ot_method", self.ot_method, ("exact", "sinkhorn"))
        choice(name, "time_sampling", self.time_sampling, ("uniform", "logit_normal", "beta", "beta_gr00t"))
        choice(name, "integrator", self.integrator, ("euler", "heun"))
        positive(
            name,
            num_inference_steps=self.num_inference_steps,
            sinkhorn_reg=self.sinkhorn_reg,
            sinkhorn_iters=self.sinkhorn_iters,
        )
        if self.sigma < 0 or self.ot_cond_weight < 0:
            raise ConfigError(f"{name}.sigma and ot_cond_weight must be >= 0, got {self.sigma}, {self.ot_cond_weight}")
