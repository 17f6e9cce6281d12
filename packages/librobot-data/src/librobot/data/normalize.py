"""The normalisation processor: dataset statistics → an affine map per feature, saved as JSON.

Each feature ``key`` gets ``y = (x - center) / scale`` per element, optionally clamped to [-1, 1]:

- ``mean_std``: center = mean, scale = std
- ``min_max``:  center = (min + max) / 2, scale = (max - min) / 2         → [min, max] ↦ [-1, 1]
- ``q01_q99``:  center = (q01 + q99) / 2, scale = (q99 - q01) / 2, clamped (the RoboVLMs recipe:
                outliers beyond the 1st/99th percentiles saturate at ±1)
- ``identity``: unchanged

``unnormalize`` is the exact inverse ``x = y * scale + center`` (up to float rounding); a clamped
value comes back as the quantile it was clamped to. Elements whose scale is below ``eps``
(constant in the data) use scale 1, so they are only shifted. Image features broadcast per-channel
statistics over [C, H, W].

The processor is torch-light: numpy arrays stay numpy, torch tensors stay torch (on their device
and dtype); torch is never imported by this module. Policies save ``to_dict()`` next to their
weights and rebuild it with ``from_dict``::

    {"format": "librobot-normalizer", "version": 1, "eps": 1e-08,
     "features": {"action": {"mode": "q01_q99", "clamp": true, "center": [...], "scale": [...]}, ...}}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.checkpoint import read_json, write_json
from librobot.core.errors import ConfigError
from librobot.data.episode import is_image_key

FORMAT = "librobot-normalizer"
VERSION = 1
MODES = ("mean_std", "min_max", "q01_q99", "identity")
DEFAULT_MODES = {"action": "q01_q99", "observation.state": "mean_std"}


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


class NormalizationProcessor:
    """Per-feature affine normalisation built from dataset statistics (see the module docstring)."""

    def __init__(self, features: Mapping[str, Mapping[str, Any]], *, eps: float = 1e-8) -> None:
        self.eps = float(eps)
        self.features: dict[str, dict[str, Any]] = {}
        for key, item in features.items():
            mode = item.get("mode", "identity")
            if mode not in MODES:
                raise ConfigError(f"normaliser: feature '{key}' has unknown mode {mode!r}; one of {MODES}")
            entry: dict[str, Any] = {"mode": mode, "clamp": bool(item.get("clamp", mode == "q01_q99"))}
            if mode != "identity":
                center = np.asarray(item["center"], dtype=np.float64)
                scale = np.asarray(item["scale"], dtype=np.float64)
                if center.shape != scale.shape:
                    raise ConfigError(
                        f"normaliser: '{key}' center {center.shape} and scale {scale.shape} differ in shape"
                    )
                if not (np.isfinite(center).all() and np.isfinite(scale).all()):
                    raise ConfigError(f"normaliser: '{key}' statistics contain NaN or inf")
                entry["center"] = center
                entry["scale"] = np.where(np.abs(scale) < self.eps, 1.0, scale)
            self.features[key] = entry
        self._cache: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    @classmethod
    def from_stats(
        cls,
        stats: Mapping[str, Mapping[str, Any]],
        modes: Mapping[str, str] | None = None,
        *,
        clamp: Mapping[str, bool] | None = None,
        eps: float = 1e-8,
    ) -> NormalizationProcessor:
        """``modes`` maps feature → mode (default: action q01_q99, observation.state mean_std)."""
        modes = dict(DEFAULT_MODES if modes is None else modes)
        features: dict[str, dict[str, Any]] = {}
        for key, mode in modes.items():
            if mode == "identity":
                features[key] = {"mode": mode}
                continue
            if key not in stats:
                raise ConfigError(f"normaliser: no statistics for '{key}' (have {sorted(stats)})")
            item = stats[key]
            need = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "q01_q99": ("q01", "q99")}.get(mode)
            if need is None:
                raise ConfigError(f"normaliser: feature '{key}' has unknown mode {mode!r}; one of {MODES}")
            missing = [n for n in need if n not in item]
            if missing:
                raise ConfigError(f"normaliser: statistics of '{key}' lack {missing} needed by mode {mode}")
            a, b = (np.asarray(item[n], dtype=np.float64) for n in need)
            center, scale = (a, b) if mode == "mean_std" else ((a + b) / 2.0, (b - a) / 2.0)
            entry: dict[str, Any] = {"mode": mode, "center": center, "scale": scale}
            if clamp and key in clamp:
                entry["clamp"] = clamp[key]
            features[key] = entry
        return cls(features, eps=eps)

    # ------------------------------------------------------------------ apply
    def _params(self, key: str, x: Any) -> tuple[Any, Any]:
        entry = self.features[key]
        center, scale = entry["center"], entry["scale"]
        if is_image_key(key) and center.ndim == 1:
            center, scale = center[:, None, None], scale[:, None, None]
        if _is_torch(x):
            cache_key = (key, str(x.dtype), str(x.device))
            if cache_key not in self._cache:
                import torch  # already imported by the caller: x is a tensor

                self._cache[cache_key] = (
                    torch.as_tensor(center, dtype=x.dtype, device=x.device),
                    torch.as_tensor(scale, dtype=x.dtype, device=x.device),
                )
            return self._cache[cache_key]
        dtype = x.dtype if np.asarray(x).dtype.kind == "f" else np.float64
        return center.astype(dtype), scale.astype(dtype)

    def normalize_value(self, key: str, x: Any) -> Any:
        entry = self.features.get(key)
        if entry is None or entry["mode"] == "identity":
            return x
        x = x if _is_torch(x) else np.asarray(x)
        center, scale = self._params(key, x)
        y = (x - center) / scale
        if entry["clamp"]:
            y = y.clamp(-1.0, 1.0) if _is_torch(y) else np.clip(y, -1.0, 1.0)
        return y

    def unnormalize_value(self, key: str, y: Any) -> Any:
        entry = self.features.get(key)
        if entry is None or entry["mode"] == "identity":
            return y
        y = y if _is_torch(y) else np.asarray(y)
        center, scale = self._params(key, y)
        return y * scale + center

    def normalize(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``batch`` with every configured feature normalised (others untouched)."""
        return {k: self.normalize_value(k, v) if k in self.features else v for k, v in batch.items()}

    def unnormalize(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self.unnormalize_value(k, v) if k in self.features else v for k, v in batch.items()}

    __call__ = normalize

    # ------------------------------------------------------------------ state
    def to_dict(self) -> dict[str, Any]:
        features = {}
        for key, entry in self.features.items():
            item: dict[str, Any] = {"mode": entry["mode"], "clamp": entry["clamp"]}
            if entry["mode"] != "identity":
                item["center"] = entry["center"].tolist()
                item["scale"] = entry["scale"].tolist()
            features[key] = item
        return {"format": FORMAT, "version": VERSION, "eps": self.eps, "features": features}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> NormalizationProcessor:
        if state.get("format") != FORMAT:
            raise ConfigError(f"not a normaliser state: format is {state.get('format')!r}, expected {FORMAT!r}")
        if int(state.get("version", 0)) > VERSION:
            raise ConfigError(
                f"normaliser state version {state['version']} is newer than this librobot-data ({VERSION})"
            )
        return cls(state["features"], eps=state.get("eps", 1e-8))

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> NormalizationProcessor:
        return cls.from_dict(read_json(path))

    def __repr__(self) -> str:
        modes = ", ".join(f"{k}: {v['mode']}" for k, v in self.features.items())
        return f"NormalizationProcessor({modes})"
