"""Diffusion head: a DiT (or Diffusion Policy's 1-D U-Net, ``denoiser="unet"``) denoiser over the
action chunk (Diffusion Policy / Octo / GR00T style).

ε-formulation (Ho et al. 2020): train to predict the noise; sample with ancestral DDPM or DDIM
(Song et al. 2021). EDM formulation (Karras et al. 2022): σ-preconditioned denoiser, log-normal
σ training with λ(σ) weighting, Heun or Euler sampling over Karras σ levels. Every sampling
update is a librobot.kernels op (``ddpm_sample``/``ddim_sample``/``edm_sample``/``edm_euler_step``).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

import librobot.kernels as kernels
from librobot.models.action_heads.base import ActionHeadBase, masked_mean
from librobot.models.action_heads.denoiser import PreparedCond, make_denoiser
from librobot.models.action_heads.diffusion.config import DiffusionConfig
from librobot.models.action_heads.diffusion.schedules import alphas_cumprod, ddim_timesteps, karras_sigmas


class DiffusionHead(ActionHeadBase):
    config_class = DiffusionConfig
    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.edm = c.formulation == "edm"
        self.denoiser = make_denoiser(c, time_scale=250.0 if self.edm else 1.0)
        acp = alphas_cumprod(c.num_train_timesteps, c.beta_schedule, c.beta_start, c.beta_end)
        self._acp = acp.tolist()  # host floats for the kernels' step ops
        self.register_buffer("alphas_cumprod", acp.to(torch.float32), persistent=False)

    # ------------------------------------------------------------------------------- EDM
    def _edm_denoise(self, x: Tensor, sigma: Tensor, prepared: PreparedCond) -> Tensor:
        """D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise) (Karras et al. 2022, Table 1)."""
        sd = self.config.sigma_data
        s = sigma.to(x.dtype).view(-1, 1, 1)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1.0 / (s**2 + sd**2).sqrt()
        return c_skip * x + c_out * self.denoiser(c_in * x, sigma.log().to(x.dtype) / 4, prepared)

    # ---------------------------------------------------------------------------- training
    def forward(
        self,
        cond: Tensor,
        actions: Tensor,
        *,
        cond_mask: Tensor | None = None,
        action_is_pad: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        c, valid = self._prep(cond, cond_mask, actions, action_is_pad)
        b = c.batch_size
        prepared = self.denoiser.prepare(c)
        noise = torch.randn(actions.shape, generator=generator, dtype=actions.dtype, device=actions.device)
        if self.edm:
            cfg = self.config
            sigma = (cfg.p_mean + cfg.p_std * torch.randn(b, generator=generator, device=actions.device)).exp()
            denoised = self._edm_denoise(actions + sigma.view(-1, 1, 1).to(actions.dtype) * noise, sigma, prepared)
            weight = ((sigma**2 + cfg.sigma_data**2) / (sigma * cfg.sigma_data) ** 2).view(-1, 1, 1).to(actions.dtype)
            loss = masked_mean(weight * (denoised - actions).pow(2), valid)
            return {"loss": loss, "edm_mse": masked_mean((denoised - actions).pow(2), valid).detach()}
        t = torch.randint(0, self.config.num_train_timesteps, (b,), generator=generator, device=actions.device)
        acp = self.alphas_cumprod[t].to(actions.dtype).view(-1, 1, 1)
        x_t = acp.sqrt() * actions + (1 - acp).sqrt() * noise
        out = self.denoiser(x_t, t.to(actions.dtype), prepared)
        kind = self.config.prediction_type
        target = (
            noise
            if kind == "epsilon"
            else actions
            if kind == "sample"
            else acp.sqrt() * noise - (1 - acp).sqrt() * actions
        )
        loss = masked_mean((out - target).pow(2), valid)
        return {"loss": loss, f"{kind}_mse": loss.detach()}

    def _eps(self, x_t: Tensor, t: int, prepared: PreparedCond) -> Tensor:
        """The network output at integer step t converted to ε, which the kernels' DDPM/DDIM steps take."""
        out = self.denoiser(x_t, torch.full((x_t.shape[0],), float(t), dtype=x_t.dtype, device=x_t.device), prepared)
        kind = self.config.prediction_type
        if kind == "epsilon":
            return out
        acp = self._acp[t]
        if kind == "sample":  # ε = (x_t − √ᾱ·x̂0) / √(1 − ᾱ)
            return (x_t - acp**0.5 * out) / (1 - acp) ** 0.5
        return acp**0.5 * out + (1 - acp) ** 0.5 * x_t  # v-prediction: ε = √ᾱ·v + √(1 − ᾱ)·x_t

    # ---------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def predict(
        self,
        cond: Tensor,
        *,
        cond_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        num_inference_steps: int | None = None,
        sampler: str | None = None,
        cache_cond: bool = True,
    ) -> Tensor:
        """Sample a chunk. ``noise`` [B, H, A] is the initial standard-normal draw (else from
        ``generator``, which also feeds DDPM's per-step noise). ``cache_cond=False`` recomputes the
        conditioning's cross-attention keys/values at every step (the reference for the cache)."""
        cfg = self.config
        sampler = sampler or cfg.sampler
        if sampler != cfg.sampler:
            cfg.replace(sampler=sampler)  # validates the name for this formulation
        steps = num_inference_steps or cfg.num_inference_steps
        c = self.condition(cond, cond_mask)
        b = c.batch_size
        cached = self.denoiser.prepare(c)
        prepared = (lambda: cached) if cache_cond else (lambda: self.denoiser.prepare(c))
        x = self.make_noise(b, generator, noise, c.pooled)
        full = lambda v: torch.full((b,), float(v), dtype=x.dtype, device=x.device)  # noqa: E731
        if not self.edm:
            eps_fn = lambda xt, t: self._eps(xt, int(t), prepared())  # noqa: E731
            if sampler == "ddpm":
                return kernels.ddpm_sample(eps_fn, x, self._acp, clip_sample=cfg.clip_sample, generator=generator)
            timesteps = ddim_timesteps(cfg.num_train_timesteps, steps)
            return kernels.ddim_sample(
                eps_fn, x, self._acp, timesteps, eta=cfg.ddim_eta, clip_sample=cfg.clip_sample, generator=generator
            )
        sigmas = karras_sigmas(steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
        x = x * sigmas[0]
        denoise_fn = lambda xs, s: self._edm_denoise(xs, full(s), prepared())  # noqa: E731
        if sampler == "heun":
            x = kernels.edm_sample(denoise_fn, x, sigmas, churn=cfg.s_churn, generator=generator)
        else:
            for sigma, sigma_next in itertools.pairwise(sigmas):
                x, _ = kernels.edm_euler_step(x, denoise_fn(x, sigma), sigma, sigma_next)
        return x.clamp(-cfg.clip_sample, cfg.clip_sample) if cfg.clip_sample is not None else x


def ddpm_head(**kwargs) -> DiffusionHead:
    """Diffusion head sampled with ancestral DDPM over every training step."""
    return DiffusionHead(**{"formulation": "epsilon", "sampler": "ddpm", **kwargs})


def ddim_head(**kwargs) -> DiffusionHead:
    """Diffusion head sampled with deterministic DDIM (``num_inference_steps``)."""
    return DiffusionHead(**{"formulation": "epsilon", "sampler": "ddim", **kwargs})


def edm_head(**kwargs) -> DiffusionHead:
    """Diffusion head in the EDM formulation (Karras et al. 2022), Heun sampler."""
    return DiffusionHead(**{"formulation": "edm", "sampler": "heun", **kwargs})


__all__ = ["DiffusionHead", "ddim_head", "ddpm_head", "edm_head"]
