"""Which observation vectors make a dataset's state (``state_keys``), their joined names and
statistics. Torch-free.

``state_keys`` (the run config's ``data.state_keys``) lists non-image ``observation.*`` vectors;
samples hold their concatenation, in that order, as ``observation.state``. The default keeps the
behaviour of stores with one state: ``observation.state`` alone. ``"all"`` takes every vector:
``observation.state`` first, then the others in the order the dataset lists them (LeRobot's
state-based PushT: agent position, then ``observation.environment_state``).

Statistics stay per feature: the joined ``observation.state`` statistics are the parts' own
statistics side by side (normalisation works per element, so each part is normalised with its own
mean/std, min/max or quantiles).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from librobot.core.batch import OBS_PREFIX, OBS_STATE
from librobot.core.errors import ConfigError
from librobot.core.specs import FeatureSpec
from librobot.data.episode import is_image_key
from librobot.data.errors import DataFormatError

ALL = "all"


def state_vectors(features: Mapping[str, FeatureSpec]) -> list[str]:
    """The non-image ``observation.*`` vectors of a dataset, ``observation.state`` first."""
    keys = [k for k, s in features.items() if k.startswith(OBS_PREFIX) and not is_image_key(k) and len(s.shape) == 1]
    return sorted(keys, key=lambda k: k != OBS_STATE)  # stable: the others keep the dataset's order


def resolve_state_keys(
    features: Mapping[str, FeatureSpec], state_key: str | None, state_keys: str | Sequence[str] | None
) -> list[str]:
    """The feature keys whose concatenation is the sampled ``observation.state`` (may be empty)."""
    if state_keys is None:  # one state vector, as before state_keys existed
        if state_key in features:
            return [state_key]
        if state_key and state_key != OBS_STATE:
            raise ConfigError(f"state_key '{state_key}' is not a feature (features: {sorted(features)})")
        return []
    if state_key not in (None, OBS_STATE):
        raise ConfigError(f"give state_key ('{state_key}') or state_keys, not both: state_keys: [{state_key}]")
    available = state_vectors(features)
    if state_keys == ALL:
        return available
    keys = [state_keys] if isinstance(state_keys, str) else list(state_keys)
    if not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise ConfigError(f"data.state_keys: expected distinct observation keys (or 'all'), got {state_keys!r}")
    for key in keys:
        if key not in available:
            why = (
                f"'{key}' is not a vector (shape {list(features[key].shape)})"
                if key in features and not is_image_key(key) and key.startswith(OBS_PREFIX)
                else f"'{key}' is not a non-image observation vector of this dataset"
            )
            raise ConfigError(f"data.state_keys: {why}; available: {available} (or 'all')")
    return keys


def joined_names(specs: Sequence[FeatureSpec]) -> tuple[str, ...] | None:
    """The element names of the concatenated state: each part's names, those that occur in more
    than one part prefixed with their part's short key (``environment_state.x``). None when no part
    has names; a part without names gets ``<short key>_<i>``."""
    if all(s.names is None for s in specs):
        return None

    def short(spec: FeatureSpec) -> str:
        return spec.name.removeprefix(OBS_PREFIX)

    per_part = [
        list(s.names) if s.names is not None else [f"{short(s)}_{i}" for i in range(s.shape[-1])] for s in specs
    ]
    owners = Counter(name for names in per_part for name in set(names))
    return tuple(
        f"{short(spec)}.{name}" if owners[name] > 1 else name for spec, names in zip(specs, per_part) for name in names
    )


def joined_feature(features: Mapping[str, FeatureSpec], keys: Sequence[str]) -> FeatureSpec:
    """The spec of ``observation.state`` made of ``keys`` (float32, widths summed, names joined)."""
    specs = [features[k] for k in keys]
    width = sum(int(s.shape[-1]) for s in specs)
    return FeatureSpec(name=OBS_STATE, shape=(width,), dtype="float32", names=joined_names(specs))


def joined_stats(stats: Mapping[str, Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """The statistics of the concatenated state: every per-element statistic the parts share,
    concatenated in ``keys`` order (``count`` is the frame count, the same for every part)."""
    missing = [k for k in keys if k not in stats]
    if missing:
        raise DataFormatError(
            f"the dataset has no statistics for state part '{missing[0]}' (has {sorted(stats)}); "
            "write or convert the store again (its writer keeps every feature's statistics), or drop the part from "
            "data.state_keys"
        )
    parts = [stats[k] for k in keys]
    shared = [name for name in parts[0] if name != "count" and all(name in p for p in parts)]
    out: dict[str, Any] = {"count": parts[0].get("count")} if "count" in parts[0] else {}
    for name in shared:
        out[name] = np.concatenate([np.asarray(p[name], dtype=np.float64).reshape(-1) for p in parts]).tolist()
    return out
