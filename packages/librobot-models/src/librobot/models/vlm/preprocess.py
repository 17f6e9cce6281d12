"""Torch-native image preprocessing for the transformers backbones.

The HF image processors work on PIL/numpy one image at a time; a policy wants batched tensors on
the GPU. These functions do the same resize → normalise (→ patchify for Qwen) on [B, 3, H, W]
float tensors in [0, 1]. With an input already at the target size they match the HF processors
to float rounding (tests/models/vlm check it against the ``*ImageProcessorPil`` classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


def resize_normalize(
    images: torch.Tensor,
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    mode: str = "bicubic",
) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] → resized to ``size`` (H, W) and normalised with ``mean``/``std``."""
    if tuple(images.shape[-2:]) != tuple(size):
        kwargs = {"align_corners": False, "antialias": True} if mode in ("bilinear", "bicubic") else {}
        images = F.interpolate(images, size=tuple(size), mode=mode, **kwargs).clamp_(0.0, 1.0)
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def qwen_patchify(
    pixels: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised [N, C, H, W] still images → Qwen-VL flat patches and their grids.

    A still image is repeated ``temporal_patch_size`` times (as the Qwen processors do) and cut into
    patches ordered merge-window by merge-window, so each run of ``merge_size**2`` rows is one
    language token. Returns patches [N * gh * gw, C * T * P * P] and grid_thw [N, 3] = (1, gh, gw).
    """
    n, c, h, w = pixels.shape
    unit = patch_size * merge_size
    if h % unit or w % unit:
        raise ValueError(f"Qwen-VL image size {h}x{w} must be a multiple of patch*merge = {unit}")
    gh, gw, t = h // patch_size, w // patch_size, temporal_patch_size
    x = pixels.unsqueeze(1).expand(n, t, c, h, w)
    x = x.reshape(n, 1, t, c, gh // merge_size, merge_size, patch_size, gw // merge_size, merge_size, patch_size)
    # → [n, grid_t, gh/m, gw/m, m, m, c, t, p, p]
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
    patches = x.reshape(n * gh * gw, c * t * patch_size * patch_size)
    grid = torch.tensor([[1, gh, gw]], dtype=torch.long, device=pixels.device).expand(n, 3).contiguous()
    return patches, grid
