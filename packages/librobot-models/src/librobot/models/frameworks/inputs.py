"""Turning what users pass to a framework into one canonical form.

Accepted forms:
- positional, as in the seeds: ``vla(images, text, proprioception, actions)`` with images [B, C, H, W],
  [B, N, C, H, W] (N cameras), a list of [B, C, H, W] or a {camera: [B, C, H, W]} mapping (or None),
  text a str or list of B str, proprioception [B, S] or [B, T, S], actions [B, A] or [B, H, A];
- the batch contract (librobot.core.batch): ``vla(batch)`` with ``observation.images.<cam>``
  [B, T, C, H, W], ``observation.state`` [B, T, S], ``task``, ``action`` [B, H, A], ``action_is_pad``.

Actions shorter than the horizon (the seeds' single step [B, A] is a chunk of one) are padded to
H and their missing steps marked in ``action_is_pad``, so they drop out of the loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from librobot.core import batch as B
from librobot.core.errors import SpecError


@dataclass
class VLAInputs:
    """Canonical inputs. ``views``: per camera [B, T, C, H, W] (T = observation history, latest last)."""

    views: list[Tensor] | None
    text: list[str]
    state: Tensor | None  # [B, T, S], raw units (normalised by the framework)
    actions: Tensor | None  # [B, H, A], raw units
    action_is_pad: Tensor | None  # [B, H] bool
    batch_size: int

    @property
    def current_views(self) -> list[Tensor] | None:
        """The latest frame of each camera, [B, C, H, W]."""
        return None if self.views is None else [v[:, -1] for v in self.views]

    @property
    def current_state(self) -> Tensor | None:
        return None if self.state is None else self.state[:, -1]


def _views_from(images: Any, cameras: Sequence[str] | None) -> list[Tensor] | None:
    if images is None or cameras == []:  # [] : a state-only policy ignores any images it is shown
        return None
    if isinstance(images, Mapping):
        names = sorted(images) if cameras is None else list(cameras)
        missing = [c for c in names if c not in images]
        if missing:
            raise SpecError(f"the policy reads cameras {names}; missing {missing} (given: {sorted(images)})")
        views = [images[k] for k in names]
    elif isinstance(images, Tensor):
        if images.dim() == 4:
            views = [images]
        elif images.dim() == 5:
            views = list(images.unbind(1))
        else:
            raise SpecError(f"images must be [B, C, H, W] or [B, N, C, H, W], got shape {list(images.shape)}")
    elif isinstance(images, Sequence) and all(isinstance(v, Tensor) for v in images):
        views = list(images)
    else:
        raise SpecError(
            f"images must be a tensor, a list of tensors or a camera → tensor mapping, got {type(images).__name__}"
        )
    if cameras is not None and not isinstance(images, Mapping) and len(views) != len(cameras):
        raise SpecError(f"the policy reads {len(cameras)} camera(s) {list(cameras)}; got {len(views)} image view(s)")
    out = []
    for i, view in enumerate(views):
        if not isinstance(view, Tensor) or view.dim() not in (4, 5):
            raise SpecError(
                f"camera {i}: expected [B, C, H, W] (or [B, T, C, H, W] history), got {getattr(view, 'shape', view)}"
            )
        out.append(view.unsqueeze(1) if view.dim() == 4 else view)
    return out


def _text_from(text: Any, batch_size: int | None) -> list[str]:
    if text is None:
        return [""] * (batch_size or 1)
    if isinstance(text, str):
        return [text] * (batch_size or 1)
    if isinstance(text, Sequence) and all(isinstance(t, str) for t in text):
        return list(text)
    raise SpecError(f"text must be a str or a list of str, got {type(text).__name__}")


def canonicalize(
    images: Any,
    text: Any = None,
    proprioception: Tensor | None = None,
    actions: Tensor | None = None,
    *,
    action_is_pad: Tensor | None = None,
    state_dim: int,
    action_dim: int,
    horizon: int,
    cameras: Sequence[str] | None = None,
) -> VLAInputs:
    """Validate and reshape framework inputs; errors name the argument and the expected layout."""
    if isinstance(images, Mapping) and any(k.startswith(B.OBS_PREFIX) or k in (B.ACTION, B.TASK) for k in images):
        batch = images
        cams = B.image_keys(batch)
        images = {B.camera_of(k): batch[k] for k in cams} if cams else None
        text = batch.get(B.TASK, text)
        proprioception = batch.get(B.OBS_STATE, proprioception)
        actions = batch.get(B.ACTION, actions)
        action_is_pad = batch.get(B.ACTION_IS_PAD, action_is_pad)
    views = _views_from(images, cameras)
    sizes = {f"camera {i}": v.shape[0] for i, v in enumerate(views or [])}
    state = None
    if proprioception is not None:
        if not isinstance(proprioception, Tensor) or proprioception.dim() not in (2, 3):
            raise SpecError(
                f"proprioception must be [B, S] or [B, T, S], got {getattr(proprioception, 'shape', proprioception)}"
            )
        state = proprioception if proprioception.dim() == 3 else proprioception.unsqueeze(1)
        if state_dim == 0:
            raise SpecError("proprioception was given but the policy was built with state_dim=0; pass state_dim=S")
        if state.shape[-1] != state_dim:
            raise SpecError(
                f"proprioception has {state.shape[-1]} values per step; the policy expects state_dim={state_dim}"
            )
        sizes["proprioception"] = state.shape[0]
    elif state_dim > 0:
        raise SpecError(f"the policy was built with state_dim={state_dim} but no proprioception was given")
    if actions is not None:
        if not isinstance(actions, Tensor) or actions.dim() not in (2, 3):
            raise SpecError(f"actions must be [B, A] (one step) or [B, H, A], got {getattr(actions, 'shape', actions)}")
        if actions.dim() == 2:
            actions = actions.unsqueeze(1)
            if action_is_pad is not None:
                raise SpecError("action_is_pad goes with an action chunk [B, H, A], not a single step [B, A]")
        if actions.shape[-1] != action_dim:
            raise SpecError(
                f"actions have {actions.shape[-1]} values per step; the policy expects action_dim={action_dim}"
            )
        steps = actions.shape[1]
        if steps > horizon:
            raise SpecError(f"the action chunk has {steps} steps; the policy's horizon is {horizon}")
        if action_is_pad is None:
            action_is_pad = torch.zeros(actions.shape[0], steps, dtype=torch.bool, device=actions.device)
        if tuple(action_is_pad.shape) != tuple(actions.shape[:2]) or action_is_pad.dtype != torch.bool:
            raise SpecError(
                f"action_is_pad must be bool {list(actions.shape[:2])}, got {action_is_pad.dtype} {list(action_is_pad.shape)}"
            )
        if steps < horizon:  # pad to H; padded steps are masked out of the loss
            pad = horizon - steps
            actions = torch.cat([actions, actions[:, -1:].expand(-1, pad, -1)], dim=1)
            action_is_pad = torch.cat([action_is_pad, action_is_pad.new_ones(actions.shape[0], pad)], dim=1)
        sizes["actions"] = actions.shape[0]
    if isinstance(text, Sequence) and not isinstance(text, str):
        sizes["text"] = len(text)
    if not sizes:
        raise SpecError("no inputs: give images, text, proprioception or a batch dict")
    sizes = {k: int(v) for k, v in sizes.items()}  # jit tracing gives sizes as 0-d tensors
    if len(set(sizes.values())) > 1:
        raise SpecError(f"batch sizes disagree: {sizes}")
    batch_size = next(iter(sizes.values()))
    return VLAInputs(views, _text_from(text, batch_size), state, actions, action_is_pad, batch_size)
