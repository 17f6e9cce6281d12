"""Action losses with the padding mask of the batch contract (``action_is_pad``).

Each is an ``nn.Module`` called as ``loss(pred, target, is_pad=None)`` → a scalar: the mean over
the action elements of the chunk steps that are not padding (padded steps repeat the episode's
last action and would teach the policy to stand still).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from librobot.core.errors import SpecError


def masked_mean(values: torch.Tensor, is_pad: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` [B, H, ...] over the entries whose chunk step is not padding."""
    if is_pad is None:
        return values.mean()
    if is_pad.shape != values.shape[:2]:
        raise SpecError(
            f"action_is_pad has shape {list(is_pad.shape)}, expected {list(values.shape[:2])} (the [B, H] of the actions)"
        )
    keep = (~is_pad.bool()).to(values.dtype)
    keep = keep.reshape(*keep.shape, *([1] * (values.ndim - 2))).expand_as(values)
    return (values * keep).sum() / keep.sum().clamp_min(1.0)


class _ActionLoss(nn.Module):
    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor, is_pad: torch.Tensor | None = None) -> torch.Tensor:
        if pred.shape != target.shape:
            raise SpecError(
                f"{type(self).__name__}: prediction shape {list(pred.shape)} differs from target {list(target.shape)}"
            )
        return masked_mean(self.elementwise(pred.float(), target.float()), is_pad)


class MSEActionLoss(_ActionLoss):
    """Mean squared error over non-padded chunk steps."""

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).square()


class L1ActionLoss(_ActionLoss):
    """Mean absolute error over non-padded chunk steps."""

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).abs()


class HuberActionLoss(_ActionLoss):
    """Huber (smooth L1) loss with threshold ``delta`` over non-padded chunk steps."""

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__()
        if delta <= 0:
            raise ValueError(f"delta must be > 0, got {delta}")
        self.delta = float(delta)

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(pred, target, reduction="none", delta=self.delta)
