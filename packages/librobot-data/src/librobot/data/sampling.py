"""Torch-free index arithmetic for sampling: frame offsets, padded windows, episode splits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from librobot.core.batch import ACTION, OBS_IMAGES
from librobot.core.errors import ConfigError


def split_episodes(num_episodes: int, *, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
    """A seeded random episode-level split: (train episodes, val episodes), each sorted.

    At least one validation episode whenever ``val_fraction > 0`` and there are two or more
    episodes, so a small dataset still gets a validation set; frames of one episode never straddle.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(num_episodes)
    n_val = round(val_fraction * num_episodes)
    if val_fraction > 0 and num_episodes >= 2:
        n_val = min(max(n_val, 1), num_episodes - 1)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def frame_offsets(
    fps: float,
    *,
    obs_keys: Sequence[str],
    action_key: str | None,
    extra_keys: Sequence[str] = (),
    obs_horizon: int = 1,
    action_horizon: int = 1,
    delta_timestamps: Mapping[str, Sequence[float]] | None = None,
    tolerance_s: float = 1e-4,
) -> dict[str, np.ndarray]:
    """Integer frame offsets per key relative to the sampled frame.

    Defaults: observations ``-(obs_horizon-1) .. 0``, the action chunk ``0 .. action_horizon-1``,
    extra keys ``0``. ``delta_timestamps`` (LeRobot style, seconds) overrides any key; the key
    ``observation.images`` applies to every camera. Each delta must land within ``tolerance_s``
    of a frame.
    """
    if obs_horizon < 1 or action_horizon < 1:
        raise ConfigError(f"obs_horizon and action_horizon must be >= 1, got {obs_horizon}, {action_horizon}")
    offsets: dict[str, np.ndarray] = {k: np.arange(-(obs_horizon - 1), 1) for k in obs_keys}
    if action_key is not None:
        offsets[action_key] = np.arange(action_horizon)
    for key in extra_keys:
        offsets[key] = np.zeros(1, dtype=np.int64)
    for key, deltas in (delta_timestamps or {}).items():
        targets = [k for k in offsets if k.startswith(OBS_IMAGES + ".")] if key == OBS_IMAGES else [key]
        if not targets or any(t not in offsets for t in targets):
            raise ConfigError(f"delta_timestamps: '{key}' is not a sampled key (sampled: {sorted(offsets)})")
        seconds = np.asarray(deltas, dtype=np.float64)
        if seconds.ndim != 1 or seconds.size == 0:
            raise ConfigError(f"delta_timestamps['{key}'] must be a non-empty list of seconds")
        frames = np.round(seconds * fps)
        off = np.abs(seconds - frames / fps)
        if np.any(off > tolerance_s):
            bad = float(seconds[np.argmax(off)])
            raise ConfigError(
                f"delta_timestamps['{key}']: {bad} s is not a multiple of the frame period 1/{fps} s "
                f"(off by {off.max():.2e} s > tolerance {tolerance_s} s)"
            )
        for target in targets:
            offsets[target] = frames.astype(np.int64)
    return {k: np.asarray(v, dtype=np.int64) for k, v in offsets.items()}


def window(frame: int, start: int, end: int, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``frame + offsets`` clamped into the episode [start, end), and where they were clamped."""
    wanted = frame + offsets
    pad = (wanted < start) | (wanted >= end)
    return np.minimum(np.maximum(wanted, start), end - 1), pad  # np.clip costs more on tiny arrays


def default_keys(features: Sequence[str], action_key: str = ACTION) -> dict[str, list[str]]:
    """Image keys and the other observation keys of a feature list."""
    images = [k for k in features if k.startswith(OBS_IMAGES + ".")]
    others = [k for k in features if k.startswith("observation.") and k not in images]
    return {"images": images, "observations": others, "action": [action_key] if action_key in features else []}
