"""The batch contract shared by datasets, policies, trainer and servers (LeRobot's key names).

- ``observation.images.<camera>``: float [B, T_obs, C, H, W] in [0, 1]
- ``observation.state``: float [B, T_obs, S]
- ``task``: list[str] of length B
- ``action``: float [B, H, A], an action chunk of horizon H
- ``action_is_pad``: bool [B, H], True where the chunk ran past the episode's end
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from librobot.core.errors import SpecError
from librobot.core.specs import dtype_name

OBS_PREFIX = "observation."
OBS_IMAGES = "observation.images"
OBS_STATE = "observation.state"
TASK = "task"
ACTION = "action"
ACTION_IS_PAD = "action_is_pad"
INDEX = "index"
EPISODE_INDEX = "episode_index"
FRAME_INDEX = "frame_index"
TIMESTAMP = "timestamp"


def image_key(camera: str) -> str:
    """``observation.images.<camera>``."""
    if not camera or "." in camera:
        raise SpecError(f"camera name must be non-empty and contain no '.', got {camera!r}")
    return f"{OBS_IMAGES}.{camera}"


def camera_of(key: str) -> str:
    """The camera name in an ``observation.images.<camera>`` key."""
    prefix = OBS_IMAGES + "."
    if not key.startswith(prefix):
        raise SpecError(f"{key!r} is not an image key (expected '{prefix}<camera>')")
    return key[len(prefix) :]


def image_keys(batch: Mapping[str, Any]) -> list[str]:
    """The camera keys of a batch (``<key>_is_pad`` flags that datasets add are not cameras)."""
    return sorted(k for k in batch if k.startswith(OBS_IMAGES + ".") and not k.endswith("_is_pad"))


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in getattr(value, "shape", ()))


def validate_batch(batch: Mapping[str, Any], *, require_action: bool = False) -> int:
    """Check a batch against the contract and return its batch size.

    Raises ``SpecError`` naming the key and what is wrong (rank, batch size, time length, dtype).
    """
    sizes: dict[str, int] = {}
    t_obs: dict[str, int] = {}
    for key in image_keys(batch):
        shape = _shape(batch[key])
        if len(shape) != 5 or shape[2] not in (1, 3):
            raise SpecError(f"'{key}': expected [B, T_obs, C, H, W] with C in (1, 3), got shape {list(shape)}")
        if not dtype_name(batch[key].dtype).startswith(("float", "bfloat")):
            raise SpecError(f"'{key}': expected a float tensor in [0, 1], got dtype {dtype_name(batch[key].dtype)}")
        sizes[key], t_obs[key] = shape[0], shape[1]
    if OBS_STATE in batch:
        shape = _shape(batch[OBS_STATE])
        if len(shape) != 3:
            raise SpecError(f"'{OBS_STATE}': expected [B, T_obs, S], got shape {list(shape)}")
        sizes[OBS_STATE], t_obs[OBS_STATE] = shape[0], shape[1]
    if TASK in batch:
        tasks = batch[TASK]
        if isinstance(tasks, str) or not all(isinstance(t, str) for t in tasks):
            raise SpecError(f"'{TASK}': expected a list of strings, got {type(tasks).__name__}")
        sizes[TASK] = len(tasks)
    if ACTION in batch:
        shape = _shape(batch[ACTION])
        if len(shape) != 3:
            raise SpecError(f"'{ACTION}': expected [B, H, A], got shape {list(shape)}")
        sizes[ACTION] = shape[0]
        if ACTION_IS_PAD in batch:
            pad_shape = _shape(batch[ACTION_IS_PAD])
            if pad_shape != shape[:2]:
                raise SpecError(f"'{ACTION_IS_PAD}': expected shape {list(shape[:2])}, got {list(pad_shape)}")
            if dtype_name(batch[ACTION_IS_PAD].dtype) != "bool":
                raise SpecError(f"'{ACTION_IS_PAD}': expected dtype bool, got {dtype_name(batch[ACTION_IS_PAD].dtype)}")
    elif require_action:
        raise SpecError(f"batch has no '{ACTION}' key (keys: {sorted(batch)})")
    if not sizes:
        raise SpecError(f"batch has none of the contract's keys (got {sorted(batch)})")
    if len(set(sizes.values())) > 1:
        raise SpecError(f"batch sizes disagree: {sizes}")
    if len(set(t_obs.values())) > 1:
        raise SpecError(f"observation history lengths (T_obs) disagree: {t_obs}")
    return next(iter(sizes.values()))
