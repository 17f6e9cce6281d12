"""Noise schedules (float64 on the host; the kernels' step ops take schedule values as floats)."""

from __future__ import annotations

import math

import torch

from librobot.core.errors import ConfigError


def alphas_cumprod(
    num_steps: int, schedule: str = "squaredcos_cap_v2", beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """ᾱ_t for t = 0 … T−1. "squaredcos_cap_v2": Nichol & Dhariwal's cosine schedule with β ≤ 0.999;
    "linear": Ho et al.'s linear betas."""
    if schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    elif schedule == "squaredcos_cap_v2":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor(
            [min(1 - f((i + 1) / num_steps) / f(i / num_steps), 0.999) for i in range(num_steps)], dtype=torch.float64
        )
    else:
        raise ConfigError(f"unknown beta schedule '{schedule}'")
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_timesteps(num_train: int, num_inference: int) -> list[int]:
    """Descending, evenly spaced steps (S−1)·r, …, r, 0 with r = T/S ("leading" spacing).

    The last training step T−1 is skipped unless every step is used: with the capped cosine
    schedule ᾱ_{T−1} ≈ 1e-7, where an ε-model's clean-sample estimate divides by √ᾱ and a
    deterministic sampler cannot recover from the resulting error.
    """
    if num_inference >= num_train:
        return list(range(num_train - 1, -1, -1))
    ratio = num_train / num_inference
    return sorted({round(i * ratio) for i in range(num_inference)}, reverse=True)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    """EDM's σ levels: (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, then 0."""
    if n == 1:
        return [sigma_max, 0.0]
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return [(hi + i / (n - 1) * (lo - hi)) ** rho for i in range(n)] + [0.0]
