"""A policy's state made of several observation vectors, and how a sent observation becomes the
policy's input (torch-free: the runtime, the servers and the ONNX edge path all use it).

A dataset may carry several non-image ``observation.*`` vectors (LeRobot's ``observation.state``
and ``observation.environment_state``, velocities…). A policy trained on several of them reads their
concatenation, in a recorded order, as its ``observation.state`` (the batch contract stays one
state tensor, so every framework works unchanged). Its *state parts* are that order with each
part's width, saved with the policy as ``[[key, width], ...]``.

``canonical_observation`` turns what a robot or client sends into what the policy reads:

- the parts sent as separate keys are concatenated, in the recorded order, into ``observation.state``;
  an ``observation.state`` of the full width (already concatenated) is taken as it is;
- LeRobot's single-camera key ``observation.image`` is read as camera ``image``
  (``observation.images.image``), the name the LeRobot readers give that camera.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from librobot.core.batch import OBS_IMAGES, OBS_STATE
from librobot.core.errors import ConfigError, SpecError

LEROBOT_IMAGE = "observation.image"  # LeRobot's name for the camera of single-camera datasets
LEROBOT_IMAGE_CAMERA = f"{OBS_IMAGES}.image"


@dataclass(frozen=True)
class StatePart:
    """One observation vector of the policy's state: its key and its width (last-axis size)."""

    key: str
    width: int


def parse_state_parts(value: Any, *, where: str = "state_parts") -> tuple[StatePart, ...]:
    """``[[key, width], ...]`` (as saved in a policy config or sidecar) → StateParts, checked.
    None gives ``()``: a policy without recorded parts reads ``observation.state`` as it is."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of [key, width] pairs, got {value!r}")
    parts = []
    for i, item in enumerate(value):
        if isinstance(item, StatePart):
            item = (item.key, item.width)
        ok = isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and len(item) == 2
        key, width = item if ok else (None, None)
        if not (isinstance(key, str) and key.startswith("observation.") and not key.startswith(OBS_IMAGES)):
            raise ConfigError(f"{where}[{i}]: expected [observation key, width] of a non-image vector, got {item!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ConfigError(f"{where}[{i}]: the width of '{key}' must be a positive integer, got {width!r}")
        parts.append(StatePart(key, width))
    keys = [p.key for p in parts]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{where}: each observation key may appear once, got {keys}")
    return tuple(parts)


def state_parts_to_json(parts: Sequence[StatePart]) -> list[list[Any]]:
    return [[p.key, p.width] for p in parts]


def is_composite(parts: Sequence[StatePart]) -> bool:
    """Whether the parts say more than "observation.state is the state" (only then are they recorded)."""
    return bool(parts) and not (len(parts) == 1 and parts[0].key == OBS_STATE)


def describe_parts(parts: Sequence[StatePart]) -> str:
    """``observation.state [2] + observation.environment_state [3]``."""
    return " + ".join(f"{p.key} [{p.width}]" for p in parts)


def join_state(observation: Mapping[str, Any], parts: Sequence[StatePart]) -> dict[str, Any]:
    """``observation`` with its state parts concatenated (last axis, recorded order) into
    ``observation.state``; other keys as given. Values may carry leading axes (batch, history),
    which must agree between parts. Raises SpecError naming the part that is missing or misshapen."""
    out = dict(observation)
    if not is_composite(parts):
        return out
    total = sum(p.width for p in parts)
    sent_parts = [p for p in parts if p.key != OBS_STATE and p.key in out]
    state = out.get(OBS_STATE)
    if state is not None and not sent_parts and np.shape(state)[-1:] == (total,):
        return out  # already concatenated (full width; a part of that width would need other parts)
    how = (
        f"this policy's state is {describe_parts(parts)}: send each part as its own key, "
        f"or {OBS_STATE} with all {total} values in that order"
    )
    missing = [p for p in parts if p.key not in out]
    if missing:
        raise SpecError(f"'{missing[0].key}': missing ({missing[0].width} values); {how}")
    arrays = [np.asarray(out.pop(p.key)) for p in parts]
    for part, array in zip(parts, arrays):
        if array.ndim == 0 or array.shape[-1] != part.width:
            raise SpecError(
                f"'{part.key}': expected {part.width} values on the last axis, got shape {list(array.shape)}; {how}"
            )
    for part, array in zip(parts[1:], arrays[1:]):
        if array.shape[:-1] != arrays[0].shape[:-1]:
            raise SpecError(
                f"'{part.key}': leading axes {list(array.shape[:-1])} differ from {parts[0].key}'s "
                f"{list(arrays[0].shape[:-1])}; every state part needs the same batch/history axes"
            )
    out[OBS_STATE] = np.concatenate(arrays, axis=-1)
    return out


def canonical_observation(observation: Mapping[str, Any], parts: Sequence[StatePart] = ()) -> dict[str, Any]:
    """What the policy reads from a sent observation (see the module docstring)."""
    out = dict(observation)
    if LEROBOT_IMAGE in out and LEROBOT_IMAGE_CAMERA not in out:
        out[LEROBOT_IMAGE_CAMERA] = out.pop(LEROBOT_IMAGE)
    return join_state(out, parts)
