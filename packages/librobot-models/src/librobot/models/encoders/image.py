"""Image encoders written here (no torchvision): a ResNet-style CNN (ResNet-18 by default, He et
al. 2016) with BatchNorm or GroupNorm and average / spatial-softmax / token outputs, and a ViT
(Dosovitskiy et al. 2021) built from the shared transformer blocks.

Inputs follow the batch contract: float [B, C, H, W] or [B, T, C, H, W] in [0, 1]; the encoders
standardise with ImageNet statistics themselves (``normalize_input``), so callers pass raw frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from librobot.core.errors import ConfigError, SpecError
from librobot.models.components.normalization import GroupNorm
from librobot.models.components.transformer import Transformer
from librobot.models.encoders.base import EncoderBase

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POOLS = ("avg", "spatial_softmax", "tokens")


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":  # 16 channels per group, Diffusion Policy's choice for ResNets
        return GroupNorm(max(1, channels // 16), channels)
    raise ConfigError(f"unknown image norm '{kind}'; choose 'batch' or 'group' (group for small batches)")


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = _norm2d(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = _norm2d(norm, cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm2d(norm, cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.n1(self.conv1(x)))
        return F.relu(self.n2(self.conv2(h)) + self.skip(x))


class SpatialSoftmax(nn.Module):
    """Feature map [B, C, h, w] → expected (x, y) image coordinates of K learned keypoints [B, 2K]
    (Levine et al. 2016): a spatially precise summary that average pooling throws away."""

    def __init__(self, channels: int, num_keypoints: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, num_keypoints, 1)

    def forward(self, fmap: Tensor) -> Tensor:
        h, w = fmap.shape[-2:]
        logits = self.proj(fmap).flatten(2)  # [B, K, h*w]
        probs = logits.float().softmax(-1)
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, h, device=fmap.device), torch.linspace(-1, 1, w, device=fmap.device), indexing="ij"
        )
        coords = torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # [h*w, 2]
        return (probs @ coords).flatten(1).to(fmap.dtype)


class _ImageEncoder(EncoderBase):
    def _prepare(self, images: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        self.check(images, "images", {4: "[B, C, H, W]", 5: "[B, T, C, H, W]"})
        lead = tuple(images.shape[:-3])
        x = images.reshape(-1, *images.shape[-3:])
        if x.shape[1] != self.in_channels:
            raise SpecError(f"images: expected {self.in_channels} channels, got shape {list(images.shape)}")
        if self.normalize_input:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return x, lead

    def _register_stats(self, in_channels: int, normalize_input: bool) -> None:
        self.in_channels, self.normalize_input = int(in_channels), bool(normalize_input)
        mean = IMAGENET_MEAN if in_channels == 3 else (0.5,) * in_channels
        std = IMAGENET_STD if in_channels == 3 else (0.5,) * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)


class ResNetEncoder(_ImageEncoder):
    """ResNet with basic blocks (``layers=(2, 2, 2, 2)`` is ResNet-18), random initialisation.

    ``pool``: "avg" → [B, output_dim]; "spatial_softmax" → keypoints → [B, output_dim];
    "tokens" → the final feature map as [B, h·w, output_dim]. A leading T axis is kept.
    """

    def __init__(
        self,
        in_channels: int = 3,
        output_dim: int = 512,
        layers: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        norm: str = "group",
        pool: str = "avg",
        num_keypoints: int = 32,
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        self._record(locals())
        if pool not in POOLS:
            raise ConfigError(f"unknown pool '{pool}'; choose one of {', '.join(POOLS)}")
        if len(layers) != len(widths):
            raise ConfigError(f"layers {list(layers)} and widths {list(widths)} must have the same length")
        self._register_stats(in_channels, normalize_input)
        self._output_dim, self.pool = int(output_dim), pool
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False),
            _norm2d(norm, widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, cin = [], widths[0]
        for i, (n, cout) in enumerate(zip(layers, widths)):
            blocks = [_BasicBlock(cin, cout, 1 if i == 0 else 2, norm)] + [
                _BasicBlock(cout, cout, 1, norm) for _ in range(n - 1)
            ]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        if pool == "spatial_softmax":
            self.keypoints = SpatialSoftmax(cin, num_keypoints)
            self.head: nn.Module = nn.Linear(2 * num_keypoints, output_dim)
        else:
            self.head = nn.Linear(cin, output_dim) if cin != output_dim else nn.Identity()

    def feature_map(self, images: Tensor) -> Tensor:
        x, _ = self._prepare(images)
        return self.stages(self.stem(x))

    def forward(self, images: Tensor) -> Tensor:
        x, lead = self._prepare(images)
        fmap = self.stages(self.stem(x))
        if self.pool == "avg":
            out = self.head(fmap.mean(dim=(2, 3)))
        elif self.pool == "spatial_softmax":
            out = self.head(self.keypoints(fmap))
        else:
            out = self.head(fmap.flatten(2).transpose(1, 2))
        return out.reshape(*lead, *out.shape[1:])


def resnet18(
    in_channels: int = 3, output_dim: int = 512, norm: str = "group", pool: str = "avg", **kwargs
) -> ResNetEncoder:
    """ResNet-18 layout (2-2-2-2 basic blocks, widths 64-512)."""
    return ResNetEncoder(in_channels, output_dim, (2, 2, 2, 2), (64, 128, 256, 512), norm=norm, pool=pool, **kwargs)


class ViTEncoder(_ImageEncoder):
    """Vision transformer: conv patch embedding, [CLS], learned positions, pre-norm blocks.

    ``pool``: "cls" or "mean" → [B, output_dim]; "tokens" → patch tokens [B, N, output_dim]
    (what a VLM feeds its language model). A leading T axis is kept.
    """

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        dim: int = 192,
        depth: int = 4,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        output_dim: int | None = None,
        pool: str = "cls",
        norm: str = "layernorm",
        normalize_input: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self._record(locals())
        if image_size % patch_size:
            raise ConfigError(f"image_size ({image_size}) must be a multiple of patch_size ({patch_size})")
        if pool not in ("cls", "mean", "tokens"):
            raise ConfigError(f"unknown pool '{pool}'; choose cls, mean or tokens")
        self._register_stats(in_channels, normalize_input)
        self.image_size, self.patch_size, self.pool = int(image_size), int(patch_size), pool
        self.num_patches = (image_size // patch_size) ** 2
        self._output_dim = int(output_dim or dim)
        self.patch = nn.Conv2d(in_channels, dim, patch_size, patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, self.num_patches + 1, dim) * 0.02)
        self.encoder = Transformer(dim, depth, num_heads, mlp_ratio=mlp_ratio, norm=norm, dropout=dropout)
        self.head = nn.Linear(dim, self._output_dim) if self._output_dim != dim else nn.Identity()

    def forward(self, images: Tensor) -> Tensor:
        x, lead = self._prepare(images)
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise SpecError(
                f"images: expected {self.image_size}x{self.image_size}, got {list(x.shape[-2:])}; resize first"
            )
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1) + self.pos.to(
            tokens.dtype
        )
        h = self.encoder(tokens)
        if self.pool == "cls":
            out = self.head(h[:, 0])
        elif self.pool == "mean":
            out = self.head(h[:, 1:].mean(dim=1))
        else:
            out = self.head(h[:, 1:])
        return out.reshape(*lead, *out.shape[1:])
