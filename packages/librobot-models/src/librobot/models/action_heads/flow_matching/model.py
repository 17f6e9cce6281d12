"""Flow-matching head: a DiT (or 1-D U-Net, ``denoiser="unet"``) velocity field over the action
chunk (π0 / GR00T N1 style).

Rectified flow (Liu et al. 2023; Lipman et al. 2023): straight paths between independent noise and
data. OT-CFM (Tong et al. 2024): the same loss with noise and data paired by minibatch optimal
transport (``coupling.py``). Sampling integrates the velocity with librobot.kernels'
``flow_sample`` (Euler or Heun) from t = 1 (noise) to t = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

import librobot.kernels as kernels
from librobot.models.action_heads.base import ActionHeadBase, masked_mean
from librobot.models.action_heads.denoiser import make_denoiser
from librobot.models.action_heads.flow_matching.config import FlowMatchingConfig
from librobot.models.action_heads.flow_matching.coupling import ot_pairing

_BETA_S = 0.999  # π0's and GR00T's s (FlowMatchingConfig.time_sampling says how each uses it)
_BETA_ALPHA = 1.5  # both sample B ~ Beta(1.5, 1), whose CDF u^1.5 inverts in closed form


class FlowMatchingHead(ActionHeadBase):
    config_class = FlowMatchingConfig
    config: FlowMatchingConfig

    def __init__(self, config: FlowMatchingConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.denoiser = make_denoiser(self.config, time_scale=1000.0)

    def sample_time(self, b: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        u = torch.rand(b, generator=generator, device=like.device, dtype=like.dtype)
        kind = self.config.time_sampling
        if kind == "uniform":
            return u
        if kind == "logit_normal":
            return torch.sigmoid(torch.randn(b, generator=generator, device=like.device, dtype=like.dtype))
        # B ~ Beta(1.5, 1) by inverting its CDF u^1.5 (keeps the draw on ``generator``)
        beta = u.pow(1 / _BETA_ALPHA)
        if kind == "beta_gr00t":  # GR00T's τ = (s − B) / s, τ = 1 at the data: t = 1 − τ = B / s
            return beta / _BETA_S
        return (1 - _BETA_S) + _BETA_S * beta  # π0

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
        cfg, b = self.config, c.batch_size
        noise = torch.randn(actions.shape, generator=generator, dtype=actions.dtype, device=actions.device)
        if cfg.coupling == "ot":
            valid_elems = None if valid is None else valid[:, :, None].expand_as(actions)
            idx = ot_pairing(
                actions,
                noise,
                cond=c.pooled.detach(),
                valid=valid_elems,
                cond_weight=cfg.ot_cond_weight,
                method=cfg.ot_method,
                reg=cfg.sinkhorn_reg,
                iters=cfg.sinkhorn_iters,
                generator=generator,
            )
            noise = noise[idx]
        t = self.sample_time(b, generator, actions)
        tt = t.view(-1, 1, 1)
        x_t = (1 - tt) * actions + tt * noise
        if cfg.sigma > 0:
            x_t = x_t + cfg.sigma * torch.randn(
                actions.shape, generator=generator, dtype=actions.dtype, device=actions.device
            )
        velocity = self.denoiser(x_t, t, self.denoiser.prepare(c))
        loss = masked_mean((velocity - (noise - actions)).pow(2), valid)
        return {"loss": loss, "velocity_mse": loss.detach()}

    @torch.no_grad()
    def predict(
        self,
        cond: Tensor,
        *,
        cond_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        num_inference_steps: int | None = None,
        integrator: str | None = None,
        cache_cond: bool = True,
    ) -> Tensor:
        """Integrate from ``noise`` (or a draw from ``generator``) at t = 1 to t = 0.
        ``cache_cond=False`` recomputes the conditioning keys/values per step (the reference path)."""
        steps = num_inference_steps or self.config.num_inference_steps
        method = integrator or self.config.integrator
        c = self.condition(cond, cond_mask)
        b = c.batch_size
        cached = self.denoiser.prepare(c)
        x = self.make_noise(b, generator, noise, c.pooled)

        def velocity(xt: Tensor, t: float) -> Tensor:
            prepared = cached if cache_cond else self.denoiser.prepare(c)
            return self.denoiser(xt, torch.full((b,), t, dtype=xt.dtype, device=xt.device), prepared)

        timesteps = [1.0 - i / steps for i in range(steps + 1)]
        return kernels.flow_sample(velocity, x, timesteps, method=method)


def rectified_flow_head(**kwargs) -> FlowMatchingHead:
    """Flow matching with independent coupling (rectified flow, π0)."""
    return FlowMatchingHead(**{"coupling": "independent", **kwargs})


def ot_cfm_head(**kwargs) -> FlowMatchingHead:
    """OT-CFM: minibatch optimal-transport coupling (exact assignment by default), σ = 0.01 path width."""
    return FlowMatchingHead(**{"coupling": "ot", "sigma": 0.01, **kwargs})
