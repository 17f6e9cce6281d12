"""Config of the diffusion head (DDPM / DDIM with ε-prediction, or EDM)."""

from __future__ import annotations

from dataclasses import dataclass

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import DenoiserConfig, choice, positive

SAMPLERS = {"epsilon": ("ddpm", "ddim"), "edm": ("heun", "euler")}


@dataclass
class DiffusionConfig(DenoiserConfig):
    """formulation: "epsilon" (DDPM training; sampler "ddpm" ancestral over all steps, or "ddim"
    over ``num_inference_steps``; the network's output is ``prediction_type``: "epsilon", "sample"
    (the clean chunk) or "v_prediction" (Salimans & Ho 2022), converted to ε for the sampler
    updates) or "edm" (Karras et al. 2022 preconditioning and loss weight;
    sampler "heun" or "euler" over ``num_inference_steps`` Karras σ levels).
    clip_sample: clamp the predicted clean chunk to ±clip_sample (actions normalised to [-1, 1]).
    """

    formulation: str = "epsilon"
    prediction_type: str = "epsilon"
    sampler: str = "ddim"
    num_train_timesteps: int = 100
    num_inference_steps: int = 10
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    clip_sample: float | None = 1.0
    ddim_eta: float = 0.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0
    p_mean: float = -1.2
    p_std: float = 1.2
    s_churn: float = 0.0

    head_target = "librobot.models.action_heads.diffusion.model:DiffusionHead"

    def validate(self) -> None:
        super().validate()
        name = "DiffusionConfig"
        choice(name, "formulation", self.formulation, tuple(SAMPLERS))
        choice(name, "sampler", self.sampler, SAMPLERS[self.formulation])
        choice(name, "prediction_type", self.prediction_type, ("epsilon", "sample", "v_prediction"))
        choice(name, "beta_schedule", self.beta_schedule, ("squaredcos_cap_v2", "linear"))
        positive(
            name,
            num_train_timesteps=self.num_train_timesteps,
            num_inference_steps=self.num_inference_steps,
            sigma_min=self.sigma_min,
            sigma_data=self.sigma_data,
            rho=self.rho,
            p_std=self.p_std,
        )
        if (
            self.formulation == "epsilon"
            and self.sampler == "ddim"
            and self.num_inference_steps > self.num_train_timesteps
        ):
            raise ConfigError(
                f"{name}.num_inference_steps ({self.num_inference_steps}) exceeds num_train_timesteps ({self.num_train_timesteps})"
            )
        if self.sigma_max <= self.sigma_min:
            raise ConfigError(f"{name}.sigma_max ({self.sigma_max}) must exceed sigma_min ({self.sigma_min})")
        if self.clip_sample is not None and self.clip_sample <= 0:
            raise ConfigError(f"{name}.clip_sample must be > 0 or None, got {self.clip_sample}")
        if not 0.0 <= self.ddim_eta <= 1.0:
            raise ConfigError(f"{name}.ddim_eta must be in [0, 1], got {self.ddim_eta}")
