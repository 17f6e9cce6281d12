"""The in-memory episode every reader yields and every writer takes, and feature inference.

Conventions (shared by all formats and the robots package):
- ``frames`` maps batch-contract keys to per-frame arrays with time first: ``observation.state``
  [T, S], ``action`` [T, A], ``observation.images.<camera>`` uint8 [T, H, W, C] (HWC, as cameras and
  renderers produce them), any other feature [T, *shape].
- ``task`` is the instruction: one string for the episode, or one string per frame.
- Feature specs (``librobot.core.specs.FeatureSpec``) describe one frame; image specs use the core
  convention (C, H, W) with kind "image" and dtype uint8, since that is how the store keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from librobot.core.batch import OBS_IMAGES
from librobot.core.specs import FeatureSpec, dtype_name
from librobot.data.errors import EpisodeError

IMAGE_PREFIX = OBS_IMAGES + "."
# Keys the store derives itself; they may not be features.
RESERVED_KEYS = frozenset({"index", "episode_index", "frame_index", "timestamp", "task_index", "task"})


def is_image_key(key: str) -> bool:
    return key.startswith(IMAGE_PREFIX)


@dataclass
class Episode:
    """One demonstration: per-frame arrays, its task(s) and frame rate."""

    frames: dict[str, np.ndarray]
    task: str | list[str] = ""
    fps: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        lengths = {len(v) for v in self.frames.values()}
        if len(lengths) != 1:
            got = {k: len(v) for k, v in self.frames.items()}
            raise EpisodeError(f"episode arrays have different lengths: {got}")
        return lengths.pop()

    def frame_tasks(self) -> list[str]:
        """One task string per frame."""
        if isinstance(self.task, str):
            return [self.task] * self.length
        if len(self.task) != self.length:
            raise EpisodeError(f"episode has {self.length} frames but {len(self.task)} per-frame tasks")
        return list(self.task)

    @property
    def main_task(self) -> str:
        """The episode's task (the first frame's when it changes within the episode)."""
        return self.task if isinstance(self.task, str) else (self.task[0] if self.task else "")


def _frame_shape_from_array(key: str, array: np.ndarray) -> tuple[int, ...]:
    if is_image_key(key):
        if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
            raise EpisodeError(
                f"'{key}': images must be uint8 [T, H, W, C] with C in (1, 3, 4), got shape {list(array.shape)}"
            )
        _, h, w, c = array.shape
        return (c, h, w)
    return tuple(array.shape[1:])


def infer_features(
    frames: Mapping[str, np.ndarray], names: Mapping[str, Sequence[str]] | None = None
) -> dict[str, FeatureSpec]:
    """Feature specs for per-frame arrays [T, ...] (images HWC in, CHW specs out)."""
    features: dict[str, FeatureSpec] = {}
    for key, value in frames.items():
        if key in RESERVED_KEYS:
            raise EpisodeError(f"'{key}' is derived by the store and cannot be a feature; rename it")
        array = np.asarray(value)
        if array.ndim == 0:
            raise EpisodeError(f"'{key}': expected an array with a time axis first, got a scalar")
        shape = _frame_shape_from_array(key, array)
        dtype = dtype_name(array.dtype)
        if is_image_key(key) and dtype != "uint8":
            raise EpisodeError(
                f"'{key}': images must be uint8 (0-255), got {dtype}; convert with (x * 255).round().astype(np.uint8)"
            )
        if dtype not in ("float16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64", "bool"):
            raise EpisodeError(f"'{key}': unsupported dtype {dtype}")
        feature_names = tuple(names[key]) if names and key in names else None
        features[key] = FeatureSpec(
            name=key, shape=shape, dtype=dtype, names=feature_names, kind="image" if is_image_key(key) else "array"
        )
    return features


def check_frames(
    frames: Mapping[str, Any], features: Mapping[str, FeatureSpec], *, where: str, time_axis: bool = True
) -> dict[str, np.ndarray]:
    """Validate arrays against ``features`` and return them as numpy arrays of the feature dtype.

    Casts within a kind (float64→float32, int64→int32) are applied; anything else (int→float,
    float→int, bool↔number) is refused with a
    message naming ``where`` (a file, an episode) and the key. With ``time_axis`` every array must
    share its first (time) axis.
    """
    missing = sorted(set(features) - set(frames))
    unexpected = sorted(set(frames) - set(features))
    if missing or unexpected:
        raise EpisodeError(
            f"{where}: keys do not match the dataset's features: missing {missing}, unexpected {unexpected} "
            f"(features: {sorted(features)})"
        )
    out: dict[str, np.ndarray] = {}
    length: int | None = None
    for key, spec in features.items():
        array = np.asarray(frames[key])
        lead = 1 if time_axis else 0
        if is_image_key(key):
            c, h, w = spec.shape
            expected = (h, w, c)
        else:
            expected = spec.shape
        if array.ndim != lead + len(expected) or tuple(array.shape[lead:]) != expected:
            shown = ["T"] * lead + [str(s) for s in expected]
            raise EpisodeError(f"{where}: '{key}' has shape {list(array.shape)}, expected [{', '.join(shown)}]")
        got = dtype_name(array.dtype)
        if got != spec.dtype:
            target = np.dtype(spec.dtype)
            same_kind = array.dtype.kind == target.kind or (array.dtype.kind in "ui" and target.kind in "ui")
            if not same_kind or not np.can_cast(array.dtype, target, casting="same_kind"):
                raise EpisodeError(f"{where}: '{key}' has dtype {got}, expected {spec.dtype}")
            array = array.astype(target)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(
                np.argwhere(~np.isfinite(array.reshape(len(array), -1) if time_axis else array.reshape(1, -1)))[0][0]
            )
            raise EpisodeError(f"{where}: '{key}' contains NaN or inf (first at frame {bad})")
        if time_axis:
            if length is None:
                length = len(array)
            elif len(array) != length:
                raise EpisodeError(f"{where}: '{key}' has {len(array)} frames but other keys have {length}")
        out[key] = array
    return out
