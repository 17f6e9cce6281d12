"""Octo's diffusion action head: an MLP-ResNet ε-network on the mean-pooled readouts, DDPM.

As Octo's ``DiffusionActionHead`` (octo/model/components/action_heads.py, diffusion.py): the
diffusion step goes through learnable Fourier features (2·time_dim) and an MLP to time_dim; that,
the pooled readout embedding and the flattened noisy chunk [H·A] are concatenated into an
MLP-ResNet (Dense to hidden_dim, ``num_blocks`` × [LayerNorm → Dense 4·hidden → swish → Dense
hidden] residual, swish, Dense to H·A). Cosine ("squaredcos_cap_v2") schedule over 20 steps,
ε-prediction, ancestral DDPM sampling over all 20. One difference: the sampler clamps the
predicted clean chunk to ±clip_sample (this project's diffusion heads, actions normalised to
[-1, 1]) where Octo clamps each x_t to ±5.

Training and sampling are ``DiffusionHead``'s; only the denoiser differs, so every sampler and
formulation of that head (DDIM for export, EDM) works here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from librobot.core.errors import ConfigError
from librobot.models.action_heads.base import ActionHeadBase, Conditioning
from librobot.models.action_heads.config import positive
from librobot.models.action_heads.denoiser import PreparedCond
from librobot.models.action_heads.diffusion.config import DiffusionConfig
from librobot.models.action_heads.diffusion.model import DiffusionHead
from librobot.models.action_heads.diffusion.schedules import alphas_cumprod

# DiT-only fields of DiffusionConfig and the values that mean "not used" here
_DIT_FIELDS = {"depth": 3, "num_heads": 1, "mlp": "gelu", "cross_attention": False, "denoiser": "dit"}


@dataclass
class MLPResNetDiffusionConfig(DiffusionConfig):
    """Octo's defaults: hidden_dim 256, num_blocks 3, time_dim 32, use_layer_norm, 20 DDPM steps
    sampled ancestrally ("ddpm"; "ddim" samples deterministically and exports to ONNX). The
    DiT fields of DiffusionConfig (depth, num_heads, mlp, cross_attention) do not apply."""

    hidden_dim: int = 256
    num_heads: int = 1
    cross_attention: bool = False
    sampler: str = "ddpm"
    num_train_timesteps: int = 20
    num_inference_steps: int = 20
    num_blocks: int = 3
    time_dim: int = 32
    use_layer_norm: bool = True

    head_target = "librobot.models.frameworks.octo.head:MLPResNetDiffusionHead"

    def validate(self) -> None:
        super().validate()
        name = "MLPResNetDiffusionConfig"
        for key, unused in _DIT_FIELDS.items():
            if getattr(self, key) != unused:
                raise ConfigError(
                    f"{name}.{key} is an option of the DiT or U-Net denoisers; the MLP-ResNet denoiser is shaped by "
                    "hidden_dim, num_blocks and time_dim (leave it out)"
                )
        positive(name, num_blocks=self.num_blocks, time_dim=self.time_dim)
        if self.time_dim % 2:
            raise ConfigError(f"{name}.time_dim must be even (cos and sin halves), got {self.time_dim}")


class FourierFeatures(nn.Module):
    """t [N] → [cos(2π t w), sin(2π t w)] with learned frequencies w ~ N(0, 0.2²) (Octo's)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim // 2) * 0.2)

    def forward(self, t: Tensor) -> Tensor:
        f = 2 * math.pi * t[:, None] * self.weight
        return torch.cat([f.cos(), f.sin()], dim=-1)


class _ResidualBlock(nn.Module):
    def __init__(self, dim: int, layer_norm: bool, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.LayerNorm(dim) if layer_norm else nn.Identity(),
            nn.Linear(dim, 4 * dim),
            nn.SiLU(),  # swish
            nn.Linear(4 * dim, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class MLPResNetDenoiser(nn.Module):
    """f(x_t [N, H, A], t [N], prepared) → ε [N, H, A], conditioned on the pooled readouts only."""

    def __init__(self, config: MLPResNetDiffusionConfig) -> None:
        super().__init__()
        c = config
        self.horizon, self.action_dim = c.horizon, c.action_dim
        self.time = nn.Sequential(
            FourierFeatures(c.time_dim),
            nn.Linear(c.time_dim, 2 * c.time_dim),
            nn.SiLU(),
            nn.Linear(2 * c.time_dim, c.time_dim),
        )
        chunk = c.horizon * c.action_dim
        self.net = nn.Sequential(
            nn.Linear(c.time_dim + c.cond_dim + chunk, c.hidden_dim),
            *[_ResidualBlock(c.hidden_dim, c.use_layer_norm, c.dropout) for _ in range(c.num_blocks)],
            nn.SiLU(),
            nn.Linear(c.hidden_dim, chunk),
        )

    def prepare(self, cond: Conditioning) -> PreparedCond:
        return PreparedCond(cond.pooled, None, None)  # mean-pooled readouts, as Octo (use_map=False)

    def forward(self, x: Tensor, t: Tensor, prepared: PreparedCond) -> Tensor:
        n = x.shape[0]
        time = self.time(t.reshape(-1).expand(n) if t.numel() == 1 else t)
        h = torch.cat([time.to(x.dtype), prepared.pooled.to(x.dtype), x.reshape(n, -1)], dim=-1)
        return self.net(h).view(n, self.horizon, self.action_dim)


class MLPResNetDiffusionHead(DiffusionHead):
    config_class = MLPResNetDiffusionConfig
    config: MLPResNetDiffusionConfig

    def __init__(self, config: MLPResNetDiffusionConfig | dict | None = None, **overrides) -> None:
        # DiffusionHead.__init__ would build (and draw initial weights for) a DiT first; set up
        # what its training and sampling read (edm flag, schedule) with this denoiser instead
        ActionHeadBase.__init__(self, config, **overrides)
        c = self.config
        self.edm = c.formulation == "edm"
        self.denoiser = MLPResNetDenoiser(c)
        acp = alphas_cumprod(c.num_train_timesteps, c.beta_schedule, c.beta_start, c.beta_end)
        self._acp = acp.tolist()
        self.register_buffer("alphas_cumprod", acp.to(torch.float32), persistent=False)
