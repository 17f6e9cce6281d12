"""Diffusion Policy's conditional 1-D temporal U-Net (Chi et al. 2023, "Diffusion Policy:
Visuomotor Policy Learning via Action Diffusion", the CNN-based variant) as a chunk denoiser.

Architecture (channels-first over the H steps of the chunk):
  - step embedding: sinusoid(t · time_scale) [sin half, cos half] → Linear(d, 4d) → Mish → Linear(4d, d);
  - global conditioning g = concat(step embedding, pooled conditioning) [B, d + cond_dim];
  - residual block: Conv1d(k) → GroupNorm → Mish, FiLM from g (Mish → Linear: per-channel scale
    and bias, or bias only), Conv1d(k) → GroupNorm → Mish, plus the input (1x1 conv when the
    channel count changes);
  - down path: per level two residual blocks, then a stride-2 Conv1d(3) halving the time axis
    (not after the last level); two middle blocks at the coarsest level;
  - up path (one level fewer than down): concat the matching down level's output, two residual
    blocks, ConvTranspose1d(4, stride 2, padding 1) doubling the time axis;
  - output: Conv1d(k) → GroupNorm → Mish, then a 1x1 Conv1d to action_dim.
As in DP, the finest down level's output is never used as a skip (the up path has one level
fewer), and the output block's GroupNorm has 8 groups whatever ``unet_groups`` is (DP builds it
with its default group count); here it falls back to ``unet_groups`` when 8 does not divide
``unet_down_dims[0]`` (sizes DP cannot build).

Weights of LeRobot's ``DiffusionConditionalUnet1d`` load after ``lerobot_unet_keys`` (below).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from librobot.models.action_heads.base import Conditioning
from librobot.models.action_heads.config import DenoiserConfig
from librobot.models.action_heads.denoiser import PreparedCond
from librobot.models.components.conv1d import TemporalConv1d, TemporalConvTranspose1d

# DP's output block always uses GroupNorm's 8 groups (see the module docstring)
_DP_FINAL_GROUPS = 8


def step_embedding(t: Tensor, dim: int) -> Tensor:
    """[B] → [B, dim]: sines then cosines at frequencies 10000^(-i / (dim/2 - 1)), i < dim/2.

    Diffusion Policy's layout (sin first, last frequency exactly 1/10000), which differs from
    ``components.positional.sinusoidal_embedding`` (cos first, divisor dim/2): pretrained DP
    weights only work with this one.
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / (half - 1)))
    args = t.to(torch.float32).unsqueeze(-1) * freqs
    return torch.cat([args.sin(), args.cos()], dim=-1)


class ConvBlock1d(nn.Module):
    """Conv1d (``same`` padding, odd kernel) → GroupNorm → Mish on [B, C, H]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.conv = TemporalConv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.GroupNorm(groups, out_channels)
        self.act = nn.Mish()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class FiLM1d(nn.Module):
    """Per-channel (scale, bias) or bias from the global conditioning: Mish → Linear."""

    def __init__(self, cond_dim: int, channels: int, scale: bool) -> None:
        super().__init__()
        self.channels, self.scale = channels, scale
        self.act = nn.Mish()
        self.proj = nn.Linear(cond_dim, 2 * channels if scale else channels)

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        params = self.proj(self.act(cond)).unsqueeze(-1)  # [B, C or 2C, 1], broadcast over time
        if not self.scale:
            return h + params
        # DP multiplies by the raw scale (not 1 + scale): kept for weight compatibility
        return params[:, : self.channels] * h + params[:, self.channels :]


class ResidualBlock1d(nn.Module):
    """ConvBlock → FiLM(cond) → ConvBlock, plus the input (1x1 conv when channels differ)."""

    def __init__(
        self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, groups: int, film_scale: bool
    ) -> None:
        super().__init__()
        self.conv1 = ConvBlock1d(in_channels, out_channels, kernel_size, groups)
        self.film = FiLM1d(cond_dim, out_channels, film_scale)
        self.conv2 = ConvBlock1d(out_channels, out_channels, kernel_size, groups)
        self.residual: nn.Module = (
            TemporalConv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        return self.conv2(self.film(self.conv1(x), cond)) + self.residual(x)


class UNetLevel(nn.Module):
    """Two residual blocks and an optional resampling layer (down: stride-2 conv, up: transposed conv)."""

    def __init__(self, res1: ResidualBlock1d, res2: ResidualBlock1d, resample: nn.Module) -> None:
        super().__init__()
        self.res1, self.res2, self.resample = res1, res2, resample

    def blocks(self, x: Tensor, cond: Tensor) -> Tensor:
        return self.res2(self.res1(x, cond), cond)


class UNet1DDenoiser(nn.Module):
    """f(x_t [B, H, A], t [B] or scalar, prepared) → [B, H, A]; the interface of ``ChunkDenoiser``.

    Conditions on the pooled conditioning ``Conditioning.pooled`` [B, cond_dim] only, through FiLM
    in every residual block; conditioning tokens and their mask are ignored (Diffusion Policy
    conditions on one flattened observation-feature vector). The FiLM input is
    concat(step embedding, pooled) in that order, LeRobot's ``torch.cat([timesteps_embed,
    global_cond])``. ``time_scale`` multiplies t before the sinusoid, as in ``ChunkDenoiser``
    (integer diffusion steps: 1, which is DP's; flow t ∈ [0, 1]: 1000; EDM's c_noise: 250).
    Needs ``horizon`` divisible by 2 ** (len(unet_down_dims) - 1) (``DenoiserConfig`` checks).
    """

    def __init__(self, config: DenoiserConfig, *, time_scale: float = 1.0) -> None:
        super().__init__()
        c = config
        dims = tuple(c.unet_down_dims)
        k, groups, film_scale = c.unet_kernel_size, c.unet_groups, c.unet_film_scale
        self.time_scale = float(time_scale)
        self.step_embed_dim = d = c.unet_step_embed_dim
        self.step_mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.Mish(), nn.Linear(4 * d, d))
        cond = d + c.cond_dim

        def res(i: int, o: int) -> ResidualBlock1d:
            return ResidualBlock1d(i, o, cond, k, groups, film_scale)

        ins = (c.action_dim, *dims[:-1])
        self.down = nn.ModuleList(
            UNetLevel(
                res(i, o),
                res(o, o),
                TemporalConv1d(o, o, 3, stride=2, padding=1) if level < len(dims) - 1 else nn.Identity(),
            )
            for level, (i, o) in enumerate(zip(ins, dims))
        )
        self.mid = nn.ModuleList([res(dims[-1], dims[-1]), res(dims[-1], dims[-1])])
        # up level j: from dims[-1-j] (doubled by the skip) to dims[-2-j], then back to 2x the length
        self.up = nn.ModuleList(
            UNetLevel(res(2 * i, o), res(o, o), TemporalConvTranspose1d(o, o, 4, stride=2, padding=1))
            for i, o in zip(dims[:0:-1], dims[-2::-1])
        )
        final_groups = _DP_FINAL_GROUPS if dims[0] % _DP_FINAL_GROUPS == 0 else groups
        self.final_block = ConvBlock1d(dims[0], dims[0], k, final_groups)
        self.out_proj = TemporalConv1d(dims[0], c.action_dim, 1)

    def prepare(self, cond: Conditioning) -> PreparedCond:
        # nothing to precompute: FiLM reads the pooled vector as is (DP's raw global conditioning)
        return PreparedCond(cond.pooled, None, None)

    def forward(self, x: Tensor, t: Tensor, prepared: PreparedCond) -> Tensor:
        b = x.shape[0]
        t = t.reshape(-1).expand(b) if t.numel() == 1 else t
        step = self.step_mlp(step_embedding(t * self.time_scale, self.step_embed_dim).to(x.dtype))
        g = torch.cat([step, prepared.pooled.to(x.dtype)], dim=-1)
        h = x.transpose(1, 2)  # [B, A, H]: convolve over time
        skips = []
        for level in self.down:
            h = level.blocks(h, g)
            skips.append(h)
            h = level.resample(h)
        for block in self.mid:
            h = block(h, g)
        for level in self.up:
            h = level.resample(level.blocks(torch.cat([h, skips.pop()], dim=1), g))
        return self.out_proj(self.final_block(h)).transpose(1, 2)


# LeRobot ``DiffusionConditionalUnet1d`` key → this module's key; applied in order, each at most once.
_LEROBOT_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^diffusion_step_encoder\.1\.", "step_mlp.0."),  # .0 is the (parameter-free) sinusoid
    (r"^diffusion_step_encoder\.3\.", "step_mlp.2."),
    (r"^(down|up)_modules\.(\d+)\.0\.", r"\1.\2.res1."),
    (r"^(down|up)_modules\.(\d+)\.1\.", r"\1.\2.res2."),
    (r"^(down|up)_modules\.(\d+)\.2\.", r"\1.\2.resample."),
    (r"^mid_modules\.", "mid."),
    (r"^final_conv\.0\.", "final_block."),
    (r"^final_conv\.1\.", "out_proj."),
    (r"\.block\.0\.", ".conv."),  # inside every Conv1d → GroupNorm → Mish block
    (r"\.block\.1\.", ".norm."),
    (r"\.cond_encoder\.1\.", ".film.proj."),
    (r"\.residual_conv\.", ".residual."),
)


def lerobot_unet_keys(state_dict: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """A LeRobot ``DiffusionConditionalUnet1d`` state dict renamed for ``UNet1DDenoiser``.

    Only names change (tensors are shared, same shapes). ``prefix`` selects and strips the U-Net's
    keys from a larger state dict (a whole LeRobot ``DiffusionPolicy``: ``"diffusion.unet."``);
    keys outside it are dropped. The denoiser must be built with the same sizes: unet_down_dims =
    down_dims, unet_kernel_size = kernel_size, unet_groups = n_groups, unet_step_embed_dim =
    diffusion_step_embed_dim, unet_film_scale = use_film_scale_modulation, cond_dim = LeRobot's
    global_cond_dim, and the head's pooled conditioning must be LeRobot's global_cond (same
    feature order). The mapping, where {i} is a level index and ``…`` any block path:
      diffusion_step_encoder.1 / .3     → step_mlp.0 / .2
      down_modules.{i}.0 / .1 / .2      → down.{i}.res1 / .res2 / .resample   (up_modules → up)
      mid_modules.{i}                   → mid.{i}
      final_conv.0 / final_conv.1       → final_block / out_proj
      ….block.0 / ….block.1             → ….conv / ….norm
      ….cond_encoder.1 / ….residual_conv → ….film.proj / ….residual
    Raises ValueError for a key that is not a U-Net parameter.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        new = key[len(prefix) :]
        for pattern, repl in _LEROBOT_RENAMES:
            new = re.sub(pattern, repl, new, count=1)
        if new == key[len(prefix) :] or not re.match(r"^(step_mlp|down|mid|up|final_block|out_proj)\.", new):
            raise ValueError(f"'{key}' is not a key of LeRobot's DiffusionConditionalUnet1d (after prefix '{prefix}')")
        out[new] = value
    return out


__all__ = ["UNet1DDenoiser", "lerobot_unet_keys", "step_embedding"]
