"""Feature and space specs: what a named array looks like (shape, dtype, bounds, names, units).

Specs are plain data (JSON round trip) and validate numpy arrays, or anything with ``shape`` and
``dtype`` attributes, without importing torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from librobot.core.errors import SpecError

DTYPES = ("float16", "bfloat16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64", "bool", "string")


def dtype_name(dtype: Any) -> str:
    """'float32' for numpy dtypes, torch dtypes ('torch.float32') and strings alike."""
    name = str(dtype)
    return name.removeprefix("torch.")


@dataclass(frozen=True)
class FeatureSpec:
    """One named feature of a dataset or policy, e.g. ``observation.state`` of shape (22,)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    names: tuple[str, ...] | None = None  # one name per element of the last axis
    units: tuple[str, ...] | None = None
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    kind: str = "array"  # "array", "image" (C, H, W), "text"
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.dtype not in DTYPES:
            raise SpecError(f"feature '{self.name}': unknown dtype '{self.dtype}' (one of {', '.join(DTYPES)})")
        last = self.shape[-1] if self.shape else 1
        for attr in ("names", "units", "low", "high"):
            value = getattr(self, attr)
            if value is not None:
                object.__setattr__(self, attr, tuple(value))
                if len(value) != last:
                    raise SpecError(
                        f"feature '{self.name}': {attr} has {len(value)} entries but the last axis has {last}"
                    )
        if self.low is not None and self.high is not None:
            bad = [i for i, (lo, hi) in enumerate(zip(self.low, self.high)) if not lo <= hi]
            if bad:
                raise SpecError(f"feature '{self.name}': low > high at index {bad[0]}")

    def validate(self, value: Any, *, batch_dims: int = 0, allow_nan: bool = False) -> None:
        """Raise ``SpecError`` naming the feature if ``value`` has the wrong shape, dtype or NaNs.

        ``batch_dims`` leading axes (batch, time…) are allowed before the spec's shape.
        """
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) != batch_dims + len(self.shape) or shape[batch_dims:] != self.shape:
            lead = "[" + ", ".join(["*"] * batch_dims + [str(s) for s in self.shape]) + "]"
            raise SpecError(f"feature '{self.name}': expected shape {lead}, got {list(shape)}")
        got = dtype_name(getattr(value, "dtype", type(value).__name__))
        if got != self.dtype:
            raise SpecError(f"feature '{self.name}': expected dtype {self.dtype}, got {got}")
        if not allow_nan and self.dtype.startswith(("float", "bfloat")):
            array = np.asarray(value.float() if hasattr(value, "float") and got == "bfloat16" else value)
            if not np.isfinite(array).all():
                raise SpecError(f"feature '{self.name}': contains NaN or inf")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "kind": self.kind}
        for attr in ("names", "units", "low", "high"):
            if getattr(self, attr) is not None:
                out[attr] = list(getattr(self, attr))
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise SpecError(f"feature spec has unknown keys {sorted(unknown)}; known: {sorted(known)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


@dataclass(frozen=True)
class BoxSpace:
    """A bounded box of named dimensions (an action or state space) with [-1, 1] normalisation."""

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    units: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for attr in ("names", "low", "high", "units"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        n = len(self.names)
        if len(set(self.names)) != n:
            raise SpecError(f"space has duplicate dimension names: {self.names}")
        if len(self.low) != n or len(self.high) != n or (self.units and len(self.units) != n):
            raise SpecError(
                f"space with {n} names has {len(self.low)} lows, {len(self.high)} highs, {len(self.units)} units"
            )
        for name, lo, hi in zip(self.names, self.low, self.high):
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise SpecError(f"space dimension '{name}': need finite low < high, got [{lo}, {hi}]")

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def low_array(self) -> np.ndarray:
        return np.asarray(self.low, dtype=np.float64)

    @property
    def high_array(self) -> np.ndarray:
        return np.asarray(self.high, dtype=np.float64)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise SpecError(f"no dimension '{name}' in space {list(self.names)}") from None

    def _check(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1:] != (self.dim,):
            raise SpecError(f"expected last axis of size {self.dim} ({', '.join(self.names)}), got shape {x.shape}")
        return x

    def contains(self, x: Sequence[float] | np.ndarray, *, atol: float = 0.0) -> bool:
        x = self._check(x)
        return bool(
            np.all(np.isfinite(x)) and np.all(x >= self.low_array - atol) and np.all(x <= self.high_array + atol)
        )

    def clip(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        return np.asarray(np.clip(self._check(x), self.low_array, self.high_array), dtype=np.float64)

    def normalize(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """Map [low, high] → [-1, 1] per dimension."""
        x = self._check(x)
        return np.asarray(2.0 * (x - self.low_array) / (self.high_array - self.low_array) - 1.0)

    def denormalize(self, y: Sequence[float] | np.ndarray) -> np.ndarray:
        """Map [-1, 1] → [low, high]; the exact inverse of ``normalize``."""
        y = self._check(y)
        return np.asarray((y + 1.0) * 0.5 * (self.high_array - self.low_array) + self.low_array)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low_array, self.high_array)

    def to_feature(self, name: str) -> FeatureSpec:
        return FeatureSpec(
            name=name,
            shape=(self.dim,),
            names=self.names,
            low=self.low,
            high=self.high,
            units=self.units or None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "low": list(self.low), "high": list(self.high), "units": list(self.units)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BoxSpace:
        unknown = set(data) - {"names", "low", "high", "units"}
        if unknown:
            raise SpecError(f"space spec has unknown keys {sorted(unknown)}")
        return cls(names=data["names"], low=data["low"], high=data["high"], units=data.get("units", ()))
