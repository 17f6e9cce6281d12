"""Normalisation layers: RMSNorm, LayerNorm, GroupNorm (channel-first or channel-last).

All of them normalise in float32 at least, so bf16/fp16 activations keep their statistics exact
enough, and return the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from librobot.core.errors import ConfigError, SpecError


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x², last dim) + eps) · weight (Zhang & Sennrich 2019), no mean subtraction."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True) -> None:
        super().__init__()
        self.dim, self.eps = int(dim), float(eps)
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.dim:
            raise SpecError(f"RMSNorm({self.dim}) got input with last dim {x.shape[-1]}")
        xc = x.to(_compute_dtype(x))
        y = xc * torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight.to(y.dtype)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, affine={self.weight is not None}"


class LayerNorm(nn.Module):
    """LayerNorm over the last dim with optional bias (and optional affine, off for adaLN blocks)."""

    def __init__(self, dim: int, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.dim, self.eps = int(dim), float(eps)
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if elementwise_affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.dim:
            raise SpecError(f"LayerNorm({self.dim}) got input with last dim {x.shape[-1]}")
        xc = x.to(_compute_dtype(x))
        w = self.weight.to(xc.dtype) if self.weight is not None else None
        b = self.bias.to(xc.dtype) if self.bias is not None else None
        return F.layer_norm(xc, (self.dim,), w, b, self.eps).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, affine={self.weight is not None}, bias={self.bias is not None}"


class GroupNorm(nn.Module):
    """GroupNorm (Wu & He 2018): statistics per sample over groups of channels (and all positions).

    Independent of the batch size, unlike BatchNorm, which is why the image encoders offer it for
    the small batches of robot learning. ``channels_last=True`` takes [B, ..., C] (token layouts);
    otherwise [B, C, ...] (conv layouts).
    """

    def __init__(
        self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, channels_last: bool = False
    ) -> None:
        super().__init__()
        if num_channels % num_groups != 0:
            raise ConfigError(
                f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups ({num_groups}); "
                f"pick a divisor of {num_channels}"
            )
        self.num_groups, self.num_channels, self.eps = int(num_groups), int(num_channels), float(eps)
        self.channels_last = bool(channels_last)
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        axis = -1 if self.channels_last else 1
        if x.dim() < 2 or x.shape[axis] != self.num_channels:
            raise SpecError(
                f"GroupNorm expects {'[B, ..., C]' if self.channels_last else '[B, C, ...]'} with "
                f"C={self.num_channels}, got shape {list(x.shape)}"
            )
        xc = x.to(_compute_dtype(x))
        if self.channels_last:
            xc = xc.movedim(-1, 1)
        w = self.weight.to(xc.dtype) if self.weight is not None else None
        b = self.bias.to(xc.dtype) if self.bias is not None else None
        y = F.group_norm(xc, self.num_groups, w, b, self.eps)
        if self.channels_last:
            y = y.movedim(1, -1)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, channels_last={self.channels_last}"


NORMS = ("layernorm", "rmsnorm", "groupnorm")


def build_norm(kind: str, dim: int, *, eps: float | None = None, affine: bool = True, num_groups: int = 8) -> nn.Module:
    """A norm over the last dim by name: "layernorm", "rmsnorm" or "groupnorm" (channel-last)."""
    key = kind.lower().replace("_", "").replace("-", "")
    if key == "layernorm":
        return LayerNorm(dim, eps=1e-5 if eps is None else eps, elementwise_affine=affine)
    if key == "rmsnorm":
        return RMSNorm(dim, eps=1e-6 if eps is None else eps, elementwise_affine=affine)
    if key == "groupnorm":
        return GroupNorm(min(num_groups, dim), dim, eps=1e-5 if eps is None else eps, affine=affine, channels_last=True)
    raise ConfigError(f"unknown norm '{kind}'; choose one of {', '.join(NORMS)}")
