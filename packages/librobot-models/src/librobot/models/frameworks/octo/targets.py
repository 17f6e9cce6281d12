"""Action targets of every window frame (Octo trains each frame's readouts on the chunk that starts
at that frame).

The batch contract's ``action`` [B, H, A] starts at the latest frame (T-1). Frame T-1-k's chunk
starts k steps earlier: its steps k..H-1 are the batch's steps 0..H-1-k, its first k steps are the
actions taken at earlier frames. Those "lead" actions come in when the batch's ``action`` is
longer than H, up to T-1+H steps from the window's first frame (the dataset's
``delta_timestamps``); whatever is missing is marked padding and drops out of the loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from librobot.core import batch as B
from librobot.core.errors import SpecError
from librobot.models.frameworks.inputs import VLAInputs

OBS_IS_PAD = "observation_is_pad"  # [B, T_obs] bool from librobot-data: the frame precedes the episode


@dataclass
class OctoInputs(VLAInputs):
    """``VLAInputs`` plus what only the every-frame loss reads: ``lead_actions`` [B, K, A]
    (normalised, K <= T_obs - 1, the actions of the K frames before the latest, oldest first),
    ``lead_is_pad`` [B, K] and ``frame_is_pad`` [B, T] (frames before the episode start)."""

    lead_actions: Tensor | None = None
    lead_is_pad: Tensor | None = None
    frame_is_pad: Tensor | None = None


def split_lead(
    images: Any, actions: Tensor | None, action_is_pad: Tensor | None, *, horizon: int, n_obs_steps: int
) -> tuple[Any, Tensor | None, Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Take the lead actions (and ``observation_is_pad``) off the inputs before the shared
    canonicalisation, which knows chunks of at most H steps: → (images, actions, action_is_pad,
    lead_actions, lead_is_pad, frame_is_pad); a batch dict is copied, never changed in place."""
    is_batch = isinstance(images, Mapping) and any(
        k.startswith(B.OBS_PREFIX) or k in (B.ACTION, B.TASK) for k in images
    )  # the batch contract, as canonicalize tells it from a camera → image mapping
    batch = images if is_batch else None
    frame_is_pad = None
    if batch is not None:
        actions = batch.get(B.ACTION, actions)
        action_is_pad = batch.get(B.ACTION_IS_PAD, action_is_pad)
        frame_is_pad = batch.get(OBS_IS_PAD)
        if frame_is_pad is not None and not (
            isinstance(frame_is_pad, Tensor) and frame_is_pad.dtype == torch.bool and frame_is_pad.dim() == 2
        ):
            raise SpecError(
                f"{OBS_IS_PAD} must be bool [B, T_obs] (True = frame before the episode start), "
                f"got {getattr(frame_is_pad, 'dtype', type(frame_is_pad).__name__)} {list(getattr(frame_is_pad, 'shape', []))}"
            )
    lead = lead_pad = None
    if isinstance(actions, Tensor) and actions.dim() == 3 and actions.shape[1] > horizon:
        steps = actions.shape[1]
        extra = steps - horizon
        if extra > n_obs_steps - 1:
            raise SpecError(
                f"the action sequence has {steps} steps; Octo-style takes the chunk from the latest frame "
                f"(horizon={horizon} steps) or the actions from the window's first frame (up to "
                f"n_obs_steps - 1 + horizon = {n_obs_steps - 1 + horizon} steps)"
            )
        if action_is_pad is not None and (
            action_is_pad.dtype != torch.bool or tuple(action_is_pad.shape) != tuple(actions.shape[:2])
        ):
            raise SpecError(
                f"action_is_pad must be bool {list(actions.shape[:2])}, got {action_is_pad.dtype} {list(action_is_pad.shape)}"
            )
        lead, actions = actions[:, :extra], actions[:, extra:]
        if action_is_pad is not None:
            lead_pad, action_is_pad = action_is_pad[:, :extra], action_is_pad[:, extra:]
        else:
            lead_pad = torch.zeros(lead.shape[:2], dtype=torch.bool, device=lead.device)
    if batch is not None and lead is not None:  # the batch's own values win in canonicalize: trim them there
        images = {**batch, **{k: v for k, v in ((B.ACTION, actions), (B.ACTION_IS_PAD, action_is_pad)) if k in batch}}
    return images, actions, action_is_pad, lead, lead_pad, frame_is_pad


def window_targets(inputs: VLAInputs, steps: int) -> tuple[Tensor, Tensor]:
    """Each window frame's target chunk [B, T, H, A] and its padding [B, T, H] (True = not
    supervised): frame i's chunk is the action sequence from the window's first frame, shifted by i."""
    actions, pad = inputs.actions, inputs.action_is_pad
    assert actions is not None and pad is not None
    b, horizon = actions.shape[:2]
    lead = getattr(inputs, "lead_actions", None)
    lead_pad = getattr(inputs, "lead_is_pad", None)
    if lead is None:
        lead, lead_pad = actions[:, :0], pad[:, :0]
    missing = steps - 1 - lead.shape[1]  # lead actions the batch does not carry: filled, marked padding
    seq = torch.cat([actions[:, :1].expand(-1, missing, -1), lead, actions], dim=1)
    seq_pad = torch.cat([pad.new_ones(b, missing), lead_pad, pad], dim=1)
    idx = torch.arange(steps, device=actions.device)[:, None] + torch.arange(horizon, device=actions.device)
    return seq[:, idx], seq_pad[:, idx]
