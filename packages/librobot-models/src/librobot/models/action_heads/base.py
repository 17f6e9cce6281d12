"""The action-head contract shared by every head.

Conditioning (what frameworks pass as ``cond``):
  - a vector [B, D] (pooled VLM features, state features, or both concatenated), or
  - a token sequence [B, L, D] (VLM hidden states, state tokens…) with an optional
    ``cond_mask`` [B, L] bool, True = real token. Masked tokens never influence the output.
  D must equal ``config.cond_dim``. Heads that need one vector pool tokens (``cond_pooling``);
  heads with attention (diffusion/flow DiT, ACT, autoregressive, GPT decoder) attend to the tokens.

Training: ``forward(cond, actions, *, cond_mask=None, action_is_pad=None, generator=None)`` with
actions [B, H, A] (normalised, typically to [-1, 1]) → ``{"loss": scalar, <named terms>}``.
``action_is_pad`` [B, H] bool (True = padding past the episode end) removes those steps from the loss.

Inference: ``predict(cond, *, cond_mask=None, generator=None, noise=None, ...)`` → [B, H, A].
Randomness comes only from ``generator`` (or explicit ``noise``), so predictions are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from librobot.core.errors import SpecError
from librobot.core.interfaces import ActionHeadInterface
from librobot.models.action_heads.config import HeadConfig
from librobot.models.components.attention import AttentionPool
from librobot.models.components.capture import exporting


@dataclass
class Conditioning:
    """Normalised conditioning: ``tokens`` [B, L, D], ``mask`` [B, L] or None, ``pooled`` [B, D]."""

    tokens: Tensor
    mask: Tensor | None
    pooled: Tensor

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]


def masked_mean(values: Tensor, valid: Tensor | None) -> Tensor:
    """Mean of ``values`` [B, H, ...] over entries whose step is valid (``valid`` [B, H] float)."""
    if valid is None:
        return values.mean()
    w = valid.to(values.dtype).reshape(*valid.shape, *([1] * (values.dim() - 2))).expand_as(values)
    return (values * w).sum() / w.sum().clamp_min(1.0)


class ActionHeadBase(nn.Module, ActionHeadInterface):
    """Config handling, conditioning, validation and loss masking for every head."""

    config_class: ClassVar[type[HeadConfig]] = HeadConfig

    def __init__(self, config: HeadConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = self.config_class.resolve(config, overrides)
        c = self.config
        self.action_dim, self.horizon, self.cond_dim = c.action_dim, c.horizon, c.cond_dim
        self.cond_pool = (
            AttentionPool(c.cond_dim, num_heads=_heads_for(c.cond_dim)) if c.cond_pooling == "attention" else None
        )

    @classmethod
    def from_config(cls, config: HeadConfig | dict[str, Any]) -> ActionHeadBase:
        return cls(config)

    def get_config(self) -> dict[str, Any]:
        """JSON-able config: ``type(head).from_config(head.get_config())`` rebuilds the architecture."""
        return self.config.to_dict()

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ----------------------------------------------------------------------- conditioning
    def condition(self, cond: Tensor, cond_mask: Tensor | None = None) -> Conditioning:
        if not isinstance(cond, Tensor):
            raise SpecError(f"cond must be a tensor [B, D] or [B, L, D], got {type(cond).__name__}")
        if cond.dim() not in (2, 3) or cond.shape[-1] != self.cond_dim:
            raise SpecError(
                f"cond must be [B, {self.cond_dim}] or [B, L, {self.cond_dim}] (cond_dim={self.cond_dim}), "
                f"got shape {list(cond.shape)}; project the features or set cond_dim"
            )
        check = not exporting()
        if check and not bool(torch.isfinite(cond).all()):
            raise SpecError("cond contains NaN or inf")
        if cond.dim() == 2:
            if cond_mask is not None:
                raise SpecError("cond_mask is for token conditioning [B, L, D]; a vector cond [B, D] has no mask")
            return Conditioning(cond.unsqueeze(1), None, cond)
        b, length, _ = cond.shape
        if cond_mask is not None:
            if cond_mask.dtype != torch.bool or tuple(cond_mask.shape) != (b, length):
                raise SpecError(
                    f"cond_mask must be bool [{b}, {length}] (True = real token), got {cond_mask.dtype} {list(cond_mask.shape)}"
                )
            if check and not bool(cond_mask.any(dim=1).all()):
                raise SpecError("cond_mask hides every token of some sample; each sample needs at least one real token")
        if self.cond_pool is not None:
            pooled = self.cond_pool(cond, cond_mask)[:, 0]
        elif cond_mask is None:
            pooled = cond.mean(dim=1)
        else:
            w = cond_mask.to(cond.dtype).unsqueeze(-1)
            pooled = (cond * w).sum(dim=1) / w.sum(dim=1)
        return Conditioning(cond, cond_mask, pooled)

    # ------------------------------------------------------------------------- validation
    def check_actions(self, actions: Tensor, batch_size: int) -> None:
        expected = (batch_size, self.horizon, self.action_dim)
        if not isinstance(actions, Tensor) or tuple(actions.shape) != expected:
            shape = list(actions.shape) if isinstance(actions, Tensor) else type(actions).__name__
            raise SpecError(
                f"actions must be [B, H, A] = {list(expected)} (horizon={self.horizon}, action_dim={self.action_dim}), got {shape}"
            )
        if not actions.is_floating_point():
            raise SpecError(f"actions must be floating point, got {actions.dtype}")
        if not exporting() and not bool(torch.isfinite(actions).all()):
            raise SpecError(
                "actions contain NaN or inf; fix the data or mask those steps (and fill them with finite values)"
            )

    def valid_steps(self, action_is_pad: Tensor | None, batch_size: int) -> Tensor | None:
        """[B, H] float weights (1 = real step) from ``action_is_pad`` (True = padding), or None."""
        if action_is_pad is None:
            return None
        if action_is_pad.dtype != torch.bool or tuple(action_is_pad.shape) != (batch_size, self.horizon):
            raise SpecError(
                f"action_is_pad must be bool [{batch_size}, {self.horizon}] (True = padded step), "
                f"got {action_is_pad.dtype} {list(action_is_pad.shape)}"
            )
        return (~action_is_pad).to(torch.float32)

    def make_noise(
        self, batch_size: int, generator: torch.Generator | None, noise: Tensor | None, like: Tensor
    ) -> Tensor:
        """Standard normal [B, H, A]: ``noise`` if given (checked), else drawn from ``generator``."""
        shape = (batch_size, self.horizon, self.action_dim)
        if noise is not None:
            if tuple(noise.shape) != shape:
                raise SpecError(f"noise must be {list(shape)}, got {list(noise.shape)}")
            return noise.to(dtype=like.dtype, device=like.device)
        return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)

    def _prep(
        self, cond: Tensor, cond_mask: Tensor | None, actions: Tensor, action_is_pad: Tensor | None
    ) -> tuple[Conditioning, Tensor | None]:
        c = self.condition(cond, cond_mask)
        self.check_actions(actions, c.batch_size)
        return c, self.valid_steps(action_is_pad, c.batch_size)


def _heads_for(dim: int) -> int:
    for h in (8, 4, 2):
        if dim % h == 0 and dim // h >= 8:
            return h
    return 1


def edge_fill(actions: Tensor, valid: Tensor | None) -> Tensor:
    """Padded steps replaced by the last real step (used where a head must see a whole chunk)."""
    if valid is None:
        return actions
    h = actions.shape[1]
    idx = torch.arange(h, device=actions.device).expand(actions.shape[0], h)
    last_valid = torch.where(valid > 0, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return torch.gather(actions, 1, last_valid.unsqueeze(-1).expand_as(actions))
