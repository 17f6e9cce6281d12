"""Image augmentations with torch ops, for float images [..., C, H, W] in [0, 1].

Each transform takes a tensor or a dict of them (``observation.images.<camera>`` → [T, C, H, W]):
one random draw per call (per sample), shared over the T frames of a camera so the observation
history stays consistent, drawn afresh for each camera. Random draws use ``generator`` when given,
else torch's global RNG (which DataLoader seeds per worker). In ``eval()`` mode the random crop is
the center crop and colour jitter is off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.nn.functional as F

from librobot.data._torch import torch
from librobot.data.episode import is_image_key

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageTransform:
    """Base: apply ``_apply(image [..., C, H, W])`` to a tensor or every image of a dict."""

    training = True

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def train(self, mode: bool = True) -> ImageTransform:
        self.training = mode
        return self

    def eval(self) -> ImageTransform:
        return self.train(False)

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator)

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: Any) -> Any:
        if isinstance(images, Mapping):
            return {k: self._apply(v) if is_image_key(k) else v for k, v in images.items()}
        return self._apply(images)


class RandomCropResize(ImageTransform):
    """Crop a random window covering ``scale`` of the area (aspect kept), resize to ``size``.

    ``size`` defaults to the input size, so the output shape never changes; eval → center crop.
    """

    def __init__(
        self,
        scale: float | tuple[float, float] = (0.8, 1.0),
        size: tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        self.scale = (scale, scale) if isinstance(scale, (int, float)) else tuple(scale)
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {self.scale}")
        self.size = size

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        if self.training:
            s = self.scale[0] + (self.scale[1] - self.scale[0]) * float(self._rand(1))
        else:
            s = (self.scale[0] + self.scale[1]) / 2
        ch, cw = max(1, round(h * math.sqrt(s))), max(1, round(w * math.sqrt(s)))
        if self.training:
            top = int(self._rand(1) * (h - ch + 1))
            left = int(self._rand(1) * (w - cw + 1))
        else:
            top, left = (h - ch) // 2, (w - cw) // 2
        crop = image[..., top : top + ch, left : left + cw]
        out_h, out_w = self.size or (h, w)
        if (ch, cw) == (out_h, out_w):
            return crop.contiguous()
        flat = crop.reshape(-1, *crop.shape[-3:])
        resized = F.interpolate(flat, size=(out_h, out_w), mode="bilinear", align_corners=False)
        return resized.reshape(*crop.shape[:-2], out_h, out_w)


def _gray(image: torch.Tensor) -> torch.Tensor:
    r, g, b = image[..., 0:1, :, :], image[..., 1:2, :, :], image[..., 2:3, :, :]
    return 0.299 * r + 0.587 * g + 0.114 * b


class ColorJitter(ImageTransform):
    """Random brightness, contrast, saturation (factors in [1-x, 1+x]) and hue shift (±hue turns).

    Hue rotates the chroma plane of YIQ space; results are clamped to [0, 1].
    """

    _TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])

    def __init__(
        self,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.05,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def _factor(self, amount: float) -> float:
        return 1.0 + amount * (2 * float(self._rand(1)) - 1)

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return image
        out = image * self._factor(self.brightness)
        mean = _gray(out).mean(dim=(-3, -2, -1), keepdim=True)
        out = (out - mean) * self._factor(self.contrast) + mean
        if out.shape[-3] == 3:
            gray = _gray(out)
            out = (out - gray) * self._factor(self.saturation) + gray
            if self.hue:
                angle = 2 * math.pi * self.hue * (2 * float(self._rand(1)) - 1)
                cos, sin = math.cos(angle), math.sin(angle)
                rot = torch.tensor([[1, 0, 0], [0, cos, -sin], [0, sin, cos]], dtype=torch.float32)
                to_yiq = self._TO_YIQ
                matrix = (torch.linalg.inv(to_yiq) @ rot @ to_yiq).to(out.dtype).to(out.device)
                out = torch.einsum("ij,...jhw->...ihw", matrix, out)
        return out.clamp(0.0, 1.0)


class ImageNormalize(ImageTransform):
    """(x - mean) / std per channel (ImageNet statistics by default); ``inverse`` undoes it exactly."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__(None)
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean.to(image)) / self.std.to(image)

    def inverse(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.std.to(image) + self.mean.to(image)


class Compose(ImageTransform):
    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        super().__init__(None)
        self.transforms = list(transforms)

    def train(self, mode: bool = True) -> Compose:
        self.training = mode
        for t in self.transforms:
            if isinstance(t, ImageTransform):
                t.train(mode)
        return self

    def __call__(self, images: Any) -> Any:
        for t in self.transforms:
            images = t(images)
        return images
