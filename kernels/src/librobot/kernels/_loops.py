"""Whole sampling loops built on the dispatching steps (same schedules and noise order as
``librobot.kernels.reference.sampling``, so with one generator they give the same samples).

Torch tensors draw noise from a ``torch.Generator``; numpy arrays from a ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from librobot.core.errors import SpecError
from librobot.kernels import _arrays as A
from librobot.kernels._sampling import ddim_step, ddpm_step, edm_euler_step, edm_heun_step, euler_step, heun_step


def randn_like(x: Any, generator: Any) -> Any:
    """Standard normal noise shaped like x, drawn exactly as the reference draws it."""
    if isinstance(x, np.ndarray):
        rng = np.random.default_rng() if generator is None else generator
        if not isinstance(rng, np.random.Generator):
            raise SpecError(f"numpy arrays need a numpy.random.Generator, got {type(generator).__name__}")
        return rng.standard_normal(x.shape).astype(x.dtype, copy=False)
    torch = A.torch_module()
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def flow_sample(
    velocity_fn: Callable[[Any, float], Any],
    x: Any,
    timesteps: Sequence[float],
    *,
    method: str = "euler",
    backend: str | None = None,
) -> Any:
    """Integrate ``velocity_fn(x, t)`` over ``timesteps`` (e.g. 1.0 -> 0.0) with Euler or Heun."""
    if len(timesteps) < 2:
        raise SpecError("flow_sample needs at least two timesteps")
    if method not in ("euler", "heun"):
        raise SpecError(f"method must be 'euler' or 'heun', got {method!r}")
    for t, t_next in pairwise(timesteps):
        dt = float(t_next) - float(t)
        velocity = velocity_fn(x, float(t))
        if method == "euler":
            x = euler_step(x, velocity, dt, backend=backend)
        else:
            predictor = euler_step(x, velocity, dt, backend=backend)
            x = heun_step(x, velocity, velocity_fn(predictor, float(t_next)), dt, backend=backend)
    return x


def ddim_sample(
    eps_fn: Callable[[Any, int], Any],
    x: Any,
    alphas_cumprod: Sequence[float],
    timesteps: Sequence[int],
    *,
    eta: float = 0.0,
    clip_sample: float | None = None,
    generator: Any = None,
    backend: str | None = None,
) -> Any:
    """DDIM over descending ``timesteps`` (eta=0 deterministic)."""
    for i, t in enumerate(timesteps):
        prev = timesteps[i + 1] if i + 1 < len(timesteps) else None
        acp_prev = float(alphas_cumprod[prev]) if prev is not None else 1.0
        noise = randn_like(x, generator) if eta > 0 else None
        x = ddim_step(
            x,
            eps_fn(x, int(t)),
            noise,
            acp_t=float(alphas_cumprod[t]),
            acp_prev=acp_prev,
            eta=eta,
            clip_sample=clip_sample,
            backend=backend,
        )
    return x


def ddpm_sample(
    eps_fn: Callable[[Any, int], Any],
    x: Any,
    alphas_cumprod: Sequence[float],
    *,
    clip_sample: float | None = None,
    generator: Any = None,
    backend: str | None = None,
) -> Any:
    """Ancestral DDPM over every step T-1 ... 0."""
    for t in range(len(alphas_cumprod) - 1, -1, -1):
        acp_prev = float(alphas_cumprod[t - 1]) if t > 0 else 1.0
        noise = randn_like(x, generator) if t > 0 else None
        x = ddpm_step(
            x,
            eps_fn(x, t),
            noise,
            acp_t=float(alphas_cumprod[t]),
            acp_prev=acp_prev,
            clip_sample=clip_sample,
            backend=backend,
        )
    return x


def edm_gamma(churn: float, n: int) -> float:
    return min(churn / n, math.sqrt(2.0) - 1.0) if churn > 0 else 0.0


def edm_sample(
    denoise_fn: Callable[[Any, float], Any],
    x: Any,
    sigmas: Sequence[float],
    *,
    churn: float = 0.0,
    noise_scale: float = 1.0,
    generator: Any = None,
    backend: str | None = None,
) -> Any:
    """EDM's stochastic Heun sampler over descending ``sigmas`` ending at 0; ``x`` starts at sigma_0."""
    gamma = edm_gamma(churn, len(sigmas) - 1)
    for sigma, sigma_next in pairwise(sigmas):
        sigma, sigma_next = float(sigma), float(sigma_next)
        sigma_hat = sigma * (1.0 + gamma)
        x_hat = x
        if gamma > 0:
            x_hat = x + math.sqrt(sigma_hat**2 - sigma**2) * noise_scale * randn_like(x, generator)
        x_next, slope = edm_euler_step(x_hat, denoise_fn(x_hat, sigma_hat), sigma_hat, sigma_next, backend=backend)
        if sigma_next > 0:
            x_next = edm_heun_step(
                x_hat, slope, denoise_fn(x_next, sigma_next), x_next, sigma_hat, sigma_next, backend=backend
            )
        x = x_next
    return x
