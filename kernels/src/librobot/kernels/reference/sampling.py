"""Reference sampling updates for diffusion and flow-matching action heads.

Each step is one elementwise update of the action tensor given the model output; schedules stay
with the caller (a head owns its noise schedule) and arrive as Python floats, so a fused kernel
needs no schedule tables. Conventions:

- Diffusion (epsilon prediction): ``acp_t`` is ᾱ_t, the cumulative product of alphas at the
  current step, ``acp_prev`` at the step the update lands on (1.0 past the last step).
- Flow matching: the caller integrates a velocity field over a time grid; a step from ``t`` to
  ``t_next`` uses ``dt = t_next - t`` (negative when integrating from noise at t=1 to data at t=0).
- EDM (Karras et al. 2022): ``denoised`` is D(x; σ), the model's estimate of the clean sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
from torch import Tensor

from librobot.core.errors import SpecError


def _x0_from_eps(x_t: Tensor, eps: Tensor, acp_t: float, clip_sample: float | None) -> tuple[Tensor, Tensor]:
    """Predicted clean sample; when it is clipped, epsilon is re-derived so the update stays consistent."""
    x0 = (x_t - math.sqrt(1.0 - acp_t) * eps) / math.sqrt(acp_t)
    if clip_sample is None:
        return x0, eps
    x0 = x0.clamp(-clip_sample, clip_sample)
    return x0, (x_t - math.sqrt(acp_t) * x0) / math.sqrt(1.0 - acp_t)


def _check_schedule(acp_t: float, acp_prev: float) -> None:
    if not (0.0 < acp_t < 1.0 and 0.0 < acp_prev <= 1.0 and acp_prev >= acp_t):
        raise SpecError(f"need 0 < acp_t <= acp_prev <= 1 with acp_t < 1, got acp_t={acp_t}, acp_prev={acp_prev}")


def ddpm_step(
    x_t: Tensor, eps: Tensor, noise: Tensor | None, *, acp_t: float, acp_prev: float, clip_sample: float | None = None
) -> Tensor:
    """One ancestral DDPM step x_t → x_{t-1} with the posterior variance β̃_t ("fixed small").

    ``noise`` is a standard normal tensor like ``x_t`` (ignored, and may be None, on the last
    step where ``acp_prev == 1``).
    """
    _check_schedule(acp_t, acp_prev)
    alpha_t = acp_t / acp_prev
    beta_t = 1.0 - alpha_t
    x0, _ = _x0_from_eps(x_t, eps, acp_t, clip_sample)
    coef_x0 = math.sqrt(acp_prev) * beta_t / (1.0 - acp_t)
    coef_xt = math.sqrt(alpha_t) * (1.0 - acp_prev) / (1.0 - acp_t)
    mean = coef_x0 * x0 + coef_xt * x_t
    variance = beta_t * (1.0 - acp_prev) / (1.0 - acp_t)
    if variance <= 0.0:
        return mean
    if noise is None:
        raise SpecError("ddpm_step needs noise except on the last step (acp_prev == 1)")
    return mean + math.sqrt(variance) * noise


def ddim_step(
    x_t: Tensor,
    eps: Tensor,
    noise: Tensor | None,
    *,
    acp_t: float,
    acp_prev: float,
    eta: float = 0.0,
    clip_sample: float | None = None,
) -> Tensor:
    """One DDIM step (Song et al. 2021); ``eta=0`` is deterministic, ``eta=1`` matches DDPM's variance."""
    _check_schedule(acp_t, acp_prev)
    x0, eps = _x0_from_eps(x_t, eps, acp_t, clip_sample)
    sigma = eta * math.sqrt((1.0 - acp_prev) / (1.0 - acp_t)) * math.sqrt(max(0.0, 1.0 - acp_t / acp_prev))
    direction = math.sqrt(max(0.0, 1.0 - acp_prev - sigma**2)) * eps
    out = math.sqrt(acp_prev) * x0 + direction
    if sigma > 0.0:
        if noise is None:
            raise SpecError("ddim_step with eta > 0 needs noise")
        out = out + sigma * noise
    return out


def euler_step(x: Tensor, velocity: Tensor, dt: float) -> Tensor:
    """Flow matching: x + dt · v(x, t)."""
    return x + dt * velocity


def heun_step(x: Tensor, velocity: Tensor, velocity_next: Tensor, dt: float) -> Tensor:
    """Flow matching, second order: ``velocity_next`` is v at the Euler predictor x + dt·v."""
    return x + (0.5 * dt) * (velocity + velocity_next)


def edm_euler_step(x_hat: Tensor, denoised: Tensor, sigma_hat: float, sigma_next: float) -> tuple[Tensor, Tensor]:
    """EDM first stage: slope d = (x̂ − D(x̂; σ̂)) / σ̂ and the Euler point x̂ + (σ_next − σ̂)·d."""
    if sigma_hat <= 0.0:
        raise SpecError(f"sigma_hat must be > 0, got {sigma_hat}")
    slope = (x_hat - denoised) / sigma_hat
    return x_hat + (sigma_next - sigma_hat) * slope, slope


def edm_heun_step(
    x_hat: Tensor, slope: Tensor, denoised_next: Tensor, x_next: Tensor, sigma_hat: float, sigma_next: float
) -> Tensor:
    """EDM second-order correction at σ_next > 0: average the slopes at σ̂ and σ_next."""
    if sigma_next <= 0.0:
        return x_next  # the last step is first order
    slope_next = (x_next - denoised_next) / sigma_next
    return x_hat + (sigma_next - sigma_hat) * 0.5 * (slope + slope_next)


# ------------------------------------------------------------------------------------ whole loops
def flow_sample(
    velocity_fn: Callable[[Tensor, float], Tensor],
    x: Tensor,
    timesteps: Sequence[float],
    *,
    method: str = "euler",
) -> Tensor:
    """Integrate ``velocity_fn(x, t)`` over ``timesteps`` (e.g. 1.0 → 0.0) with Euler or Heun."""
    if len(timesteps) < 2:
        raise SpecError("flow_sample needs at least two timesteps")
    if method not in ("euler", "heun"):
        raise SpecError(f"method must be 'euler' or 'heun', got {method!r}")
    for t, t_next in pairwise(timesteps):
        dt = float(t_next) - float(t)
        velocity = velocity_fn(x, float(t))
        if method == "euler":
            x = euler_step(x, velocity, dt)
        else:
            x = heun_step(x, velocity, velocity_fn(euler_step(x, velocity, dt), float(t_next)), dt)
    return x


def ddim_sample(
    eps_fn: Callable[[Tensor, int], Tensor],
    x: Tensor,
    alphas_cumprod: Sequence[float],
    timesteps: Sequence[int],
    *,
    eta: float = 0.0,
    clip_sample: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DDIM (or, with every step and eta=1, DDPM-like) sampling over descending ``timesteps``."""
    for i, t in enumerate(timesteps):
        prev = timesteps[i + 1] if i + 1 < len(timesteps) else None
        acp_prev = float(alphas_cumprod[prev]) if prev is not None else 1.0
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) if eta > 0 else None
        x = ddim_step(
            x,
            eps_fn(x, int(t)),
            noise,
            acp_t=float(alphas_cumprod[t]),
            acp_prev=acp_prev,
            eta=eta,
            clip_sample=clip_sample,
        )
    return x


def ddpm_sample(
    eps_fn: Callable[[Tensor, int], Tensor],
    x: Tensor,
    alphas_cumprod: Sequence[float],
    *,
    clip_sample: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Ancestral DDPM sampling over every step T-1 … 0."""
    steps = len(alphas_cumprod)
    for t in range(steps - 1, -1, -1):
        acp_prev = float(alphas_cumprod[t - 1]) if t > 0 else 1.0
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) if t > 0 else None
        x = ddpm_step(
            x, eps_fn(x, t), noise, acp_t=float(alphas_cumprod[t]), acp_prev=acp_prev, clip_sample=clip_sample
        )
    return x


def edm_sample(
    denoise_fn: Callable[[Tensor, float], Tensor],
    x: Tensor,
    sigmas: Sequence[float],
    *,
    churn: float = 0.0,
    noise_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EDM's stochastic Heun sampler over descending ``sigmas`` ending at 0; ``x`` starts at σ_0."""
    n = len(sigmas) - 1
    for sigma, sigma_next in pairwise(sigmas):
        gamma = min(churn / n, math.sqrt(2.0) - 1.0) if churn > 0 else 0.0
        sigma_hat = float(sigma) * (1.0 + gamma)
        x_hat = x
        if gamma > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x_hat = x + math.sqrt(sigma_hat**2 - float(sigma) ** 2) * noise_scale * noise
        x_next, slope = edm_euler_step(x_hat, denoise_fn(x_hat, sigma_hat), sigma_hat, float(sigma_next))
        if float(sigma_next) > 0:
            x_next = edm_heun_step(
                x_hat, slope, denoise_fn(x_next, float(sigma_next)), x_next, sigma_hat, float(sigma_next)
            )
        x = x_next
    return x
