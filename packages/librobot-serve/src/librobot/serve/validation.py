"""Checking observations against a policy's declared inputs, shared by in-process policies (ONNX)
and the servers' boundary. Errors are ``SpecError`` naming the field, what was expected and what
arrived; the servers turn them into 422 / INVALID_ARGUMENT.

Accepted conversions (everything else is refused):
- any float dtype → the declared float dtype (robots report float64 state; graphs take float32);
- uint8 → float for image inputs, scaled by 1/255 (frames travel 4× smaller as uint8);
- a missing leading axis of size 1 (one frame given for a history of T_obs = 1).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from librobot.core.errors import SpecError
from librobot.core.specs import FeatureSpec

MAX_TASK_CHARS = 1000


def _is_float(dtype: np.dtype | str) -> bool:
    return np.dtype(dtype).kind == "f"


def coerce_input(spec: FeatureSpec, value: Any, batch: int | None = None) -> np.ndarray:
    """``value`` as an array of ``spec``'s shape and dtype, or a SpecError. With ``batch``, ``value``
    has a leading batch axis of that size (checked in one pass, not per item)."""
    if not isinstance(value, np.ndarray):
        raise SpecError(f"'{spec.name}': expected an array, got {type(value).__name__}")
    lead = () if batch is None else (batch,)
    want = (*lead, *spec.shape)
    if spec.kind == "image":
        value = _channels_first(spec, value)
    if value.shape != want and spec.shape[:1] == (1,) and value.shape == (*lead, *spec.shape[1:]):
        value = np.expand_dims(value, len(lead))
    if value.shape != want:
        shown = ["B", *map(str, spec.shape)] if batch is not None else list(spec.shape)
        raise SpecError(f"'{spec.name}': expected shape [{', '.join(map(str, shown))}], got {list(value.shape)}")
    dtype = np.dtype(spec.dtype)
    if value.dtype != dtype:
        if _is_float(dtype) and value.dtype == np.uint8 and spec.kind == "image":
            return value.astype(dtype) / dtype.type(255.0)
        if not (_is_float(dtype) and _is_float(value.dtype)):
            raise SpecError(f"'{spec.name}': expected dtype {spec.dtype}, got {value.dtype}")
        _check_finite(spec.name, value)
        with np.errstate(over="ignore"):
            cast = value.astype(dtype)
        if not np.isfinite(cast).all():  # finite as sent, too large for the policy's dtype
            bad = np.argwhere(~np.isfinite(cast))[0].tolist()
            raise SpecError(
                f"'{spec.name}': value {value[tuple(bad)]:.4g} at index {bad} does not fit in {dtype} "
                f"(largest magnitude {np.finfo(dtype).max:.4g}); send values in the policy's units"
            )
        value = cast
    if _is_float(dtype):
        _check_finite(spec.name, value)
    if spec.kind == "image" and _is_float(dtype) and (value.min(initial=0) < 0 or value.max(initial=0) > 1):
        raise SpecError(f"'{spec.name}': float images must lie in [0, 1] (or send uint8 frames)")
    return value


def _channels_first(spec: FeatureSpec, value: np.ndarray) -> np.ndarray:
    """[..., H, W, C] → [..., C, H, W] when the spec wants [..., C, H, W]: cameras and simulators give
    channel-last frames, and the torch policy takes both layouts, so an export takes both too."""
    channels, size = spec.shape[-3], tuple(spec.shape[-2:])
    if value.ndim >= 3 and value.shape[-1] == channels and value.shape[-3:-1] == size and value.shape[-3] != channels:
        return np.moveaxis(value, -1, -3)
    return value


def _check_finite(name: str, value: np.ndarray) -> None:
    if not np.isfinite(value).all():
        bad = np.argwhere(~np.isfinite(value))[0].tolist()
        raise SpecError(f"'{name}': contains NaN or inf (first at index {bad})")


def check_observation(
    features: Mapping[str, FeatureSpec], observation: Mapping[str, Any], batch: int | None = None
) -> dict[str, np.ndarray]:
    """Every declared input present and valid, nothing undeclared; returns the coerced arrays."""
    unknown = sorted(set(observation) - set(features))
    if unknown:
        hint = difflib.get_close_matches(unknown[0], list(features), n=1)
        near = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise SpecError(f"'{unknown[0]}': not an input of this policy{near}; inputs are {sorted(features)}")
    missing = sorted(set(features) - set(observation))
    if missing:
        raise SpecError(f"'{missing[0]}': missing; the policy needs {sorted(features)}")
    return {name: coerce_input(spec, observation[name], batch) for name, spec in features.items()}


def check_finite_arrays(observation: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """For policies that declare no inputs: arrays only, numeric, finite."""
    out = {}
    for name, value in observation.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            raise SpecError(f"'{name}': expected a numeric array, got {getattr(value, 'dtype', type(value).__name__)}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise SpecError(f"'{name}': contains NaN or inf")
        out[name] = value
    if not out:
        raise SpecError("'observation': empty; send at least observation.state")
    return out


def check_task(task: Any, tasks: Sequence[str] | None) -> str | None:
    """``task`` is None or a string, and one of ``tasks`` when the policy declares its tasks."""
    if task is not None and not isinstance(task, str):
        raise SpecError(f"'task': expected a string, got {type(task).__name__}")
    if task is not None and len(task) > MAX_TASK_CHARS:
        raise SpecError(f"'task': longer than {MAX_TASK_CHARS} characters")
    if tasks:
        if task is None:
            raise SpecError(f"'task': required; this policy knows {sorted(tasks)}")
        if task not in tasks:
            hint = difflib.get_close_matches(task, list(tasks), n=1)
            near = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise SpecError(f"'task': {task!r} is not a task this policy knows{near}; known: {sorted(tasks)}")
    return task
