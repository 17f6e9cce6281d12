"""Streaming dataset statistics: one pass, episode by episode, never the whole dataset in memory.

Numeric features (per element of the feature's shape):
- count, mean, std (population, ddof=0), min, max: exact up to float64 rounding (mean and M2 are
  merged batch by batch with Chan et al.'s parallel update).
- q01, q99: from a histogram of ``bins`` equal bins per element. The first batch sets the range
  (its min..max); when later data falls outside, the range doubles (pairs of bins merge) until it
  fits. Each order statistic is placed at its bin's center, so the estimate differs from the true
  quantile (numpy's default linear interpolation between order statistics) by at most half the
  final bin width. That bound is reported per element as ``q_error_bound``; the final width is
  ``span / bins`` with ``span`` a few times ``max - min`` at most in practice (exactly
  ``max - min`` when the first episode spans the data), i.e. ~0.1-0.4% of the range at 1024 bins.
- Quantiles are omitted for features with more than ``max_quantile_dims`` elements.

Images (uint8) get exact per-channel statistics from 256-value histograms, in [0, 1] units.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from librobot.core.specs import FeatureSpec
from librobot.data.episode import is_image_key

QUANTILES = (0.01, 0.99)
_QNAMES = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
_SLACK = 1.0 + 1e-6  # float rounding at bin edges


def _quantile_from_counts(counts: np.ndarray, q: float, centers: np.ndarray) -> float:
    """numpy-'linear' quantile from a histogram, taking each order statistic as its bin's center."""
    n = int(counts.sum())
    rank = q * (n - 1)
    k = int(np.floor(rank))
    frac = rank - k
    cum = np.cumsum(counts)
    lo = centers[int(np.searchsorted(cum, k, side="right"))]
    if frac == 0.0:
        return float(lo)
    hi = centers[int(np.searchsorted(cum, k + 1, side="right"))]
    return float((1.0 - frac) * lo + frac * hi)


class NumericStats:
    """Streaming statistics of one numeric feature, per element of its shape."""

    def __init__(self, shape: Sequence[int], *, bins: int = 1024, max_quantile_dims: int = 512) -> None:
        if bins < 2 or bins % 2:
            raise ValueError(f"bins must be an even number >= 2, got {bins}")
        self.shape = tuple(int(s) for s in shape)
        self.dim = int(np.prod(self.shape)) if self.shape else 1
        self.bins = bins
        self.with_quantiles = self.dim <= max_quantile_dims
        self.count = 0
        self.mean = np.zeros(self.dim)
        self.m2 = np.zeros(self.dim)
        self.min = np.full(self.dim, np.inf)
        self.max = np.full(self.dim, -np.inf)
        self.lo = np.zeros(self.dim)
        self.width = np.zeros(self.dim)
        self.hist = np.zeros((self.dim, bins), dtype=np.int64) if self.with_quantiles else None

    def update(self, values: np.ndarray) -> None:
        x = np.asarray(values, dtype=np.float64).reshape(-1, self.dim)
        n = len(x)
        if n == 0:
            return
        b_mean = x.mean(axis=0)
        b_m2 = ((x - b_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = b_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + b_m2 + delta**2 * (self.count * n / total)
        b_min, b_max = x.min(axis=0), x.max(axis=0)
        first = self.count == 0
        self.count = total
        self.min = np.minimum(self.min, b_min)
        self.max = np.maximum(self.max, b_max)
        if self.hist is not None:
            self._update_hist(x, b_min, b_max, first)

    def _update_hist(self, x: np.ndarray, b_min: np.ndarray, b_max: np.ndarray, first: bool) -> None:
        assert self.hist is not None
        if first:
            span = b_max - b_min
            tiny = np.maximum(np.abs(b_min), 1.0) * 1e-9
            self.lo = b_min.copy()
            self.width = np.maximum(span, tiny) / self.bins * _SLACK
        for d in range(self.dim):  # grow each element's range by doubling until the batch fits
            while b_min[d] < self.lo[d] or b_max[d] >= self.lo[d] + self.bins * self.width[d]:
                h = self.hist[d]
                merged = h[0::2] + h[1::2]
                grown = np.zeros_like(h)
                if b_min[d] < self.lo[d]:  # extend downwards: old bin i -> bins/2 + i//2
                    grown[self.bins // 2 :] = merged
                    self.lo[d] -= self.bins * self.width[d]
                else:  # extend upwards: old bin i -> i//2
                    grown[: self.bins // 2] = merged
                self.hist[d] = grown
                self.width[d] *= 2.0
        idx = np.floor((x - self.lo) / self.width).astype(np.int64)
        np.clip(idx, 0, self.bins - 1, out=idx)
        flat = idx + np.arange(self.dim) * self.bins
        self.hist += np.bincount(flat.ravel(), minlength=self.dim * self.bins).reshape(self.dim, self.bins)

    def to_state(self) -> dict[str, Any]:
        """JSON-able accumulator state (so a store can keep adding episodes later)."""
        state: dict[str, Any] = {"kind": "numeric", "shape": list(self.shape), "bins": self.bins, "count": self.count}
        for name in ("mean", "m2", "min", "max", "lo", "width"):
            state[name] = [float(v) for v in getattr(self, name)]
        state["hist"] = self.hist.tolist() if self.hist is not None else None
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> NumericStats:
        stats = cls(state["shape"], bins=state["bins"])
        stats.count = int(state["count"])
        for name in ("mean", "m2", "min", "max", "lo", "width"):
            setattr(stats, name, np.asarray(state[name], dtype=np.float64))
        stats.hist = np.asarray(state["hist"], dtype=np.int64) if state["hist"] is not None else None
        stats.with_quantiles = stats.hist is not None
        return stats

    def quantile(self, q: float) -> np.ndarray:
        assert self.hist is not None
        out = np.empty(self.dim)
        for d in range(self.dim):
            centers = self.lo[d] + (np.arange(self.bins) + 0.5) * self.width[d]
            out[d] = _quantile_from_counts(self.hist[d], q, centers)
        return np.clip(out, self.min, self.max)  # the truth lies in [min, max]: clipping only helps

    def result(self) -> dict[str, Any]:
        if self.count == 0:
            raise ValueError("no values were added")
        shape = self.shape or ()

        def shaped(a: np.ndarray) -> Any:
            return np.asarray(a).reshape(shape).tolist()

        out: dict[str, Any] = {
            "count": self.count,
            "mean": shaped(self.mean),
            "std": shaped(np.sqrt(np.maximum(self.m2 / self.count, 0.0))),
            "min": shaped(self.min),
            "max": shaped(self.max),
        }
        if self.hist is not None:
            for q, name in zip(QUANTILES, _QNAMES):
                out[name] = shaped(self.quantile(q))
            out["q_error_bound"] = shaped(0.5 * self.width * _SLACK)
        return out


class ImageStats:
    """Exact per-channel statistics of uint8 images [T, H, W, C], reported in [0, 1] units."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.hist = np.zeros((channels, 256), dtype=np.int64)

    def update(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            raise ValueError(f"image statistics need uint8 frames, got {frames.dtype}")
        flat = frames.reshape(-1, self.channels).astype(np.int64) + np.arange(self.channels) * 256
        self.hist += np.bincount(flat.ravel(), minlength=self.channels * 256).reshape(self.channels, 256)

    def to_state(self) -> dict[str, Any]:
        return {"kind": "image", "channels": self.channels, "hist": self.hist.tolist()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ImageStats:
        stats = cls(state["channels"])
        stats.hist = np.asarray(state["hist"], dtype=np.int64)
        return stats

    def result(self) -> dict[str, Any]:
        count = int(self.hist[0].sum())
        if count == 0:
            raise ValueError("no frames were added")
        values = np.arange(256, dtype=np.float64) / 255.0
        mean = (self.hist * values).sum(axis=1) / count
        var = (self.hist * (values - mean[:, None]) ** 2).sum(axis=1) / count
        nonzero = [np.flatnonzero(h) for h in self.hist]
        out: dict[str, Any] = {
            "count": count,
            "mean": mean.tolist(),
            "std": np.sqrt(var).tolist(),
            "min": [float(values[nz[0]]) for nz in nonzero],
            "max": [float(values[nz[-1]]) for nz in nonzero],
        }
        for q, name in zip(QUANTILES, _QNAMES):
            out[name] = [_quantile_from_counts(h, q, values) for h in self.hist]
        out["q_error_bound"] = [0.0] * self.channels
        return out


class StatsAccumulator:
    """Statistics of every feature of a dataset, fed one episode (dict of [T, ...] arrays) at a time."""

    def __init__(self, features: Mapping[str, FeatureSpec], *, bins: int = 1024) -> None:
        self.features = dict(features)
        self._stats: dict[str, NumericStats | ImageStats] = {}
        for key, spec in self.features.items():
            if is_image_key(key):
                self._stats[key] = ImageStats(spec.shape[0])
            else:
                self._stats[key] = NumericStats(spec.shape, bins=bins)

    def update(self, frames: Mapping[str, np.ndarray]) -> None:
        """Add an episode's arrays (images as uint8 [T, H, W, C]); keys not in the features are ignored."""
        for key, stats in self._stats.items():
            if key in frames:
                stats.update(frames[key])

    def result(self) -> dict[str, dict[str, Any]]:
        return {key: stats.result() for key, stats in self._stats.items() if _has_data(stats)}

    def to_state(self) -> dict[str, Any]:
        return {key: stats.to_state() for key, stats in self._stats.items()}

    @classmethod
    def from_state(cls, features: Mapping[str, FeatureSpec], state: Mapping[str, Any]) -> StatsAccumulator:
        acc = cls(features)
        if set(state) != set(acc._stats):
            raise ValueError(f"statistics state has keys {sorted(state)}, features are {sorted(acc._stats)}")
        for key, item in state.items():
            acc._stats[key] = ImageStats.from_state(item) if item["kind"] == "image" else NumericStats.from_state(item)
        return acc


def _has_data(stats: NumericStats | ImageStats) -> bool:
    return stats.count > 0 if isinstance(stats, NumericStats) else bool(stats.hist[0].sum())


def compute_stats(
    episodes: Iterable[Mapping[str, np.ndarray]], features: Mapping[str, FeatureSpec], *, bins: int = 1024
) -> dict[str, dict[str, Any]]:
    """Stream over ``episodes`` (dicts of per-frame arrays) and return the statistics of ``features``."""
    acc = StatsAccumulator(features, bins=bins)
    for frames in episodes:
        acc.update(frames)
    return acc.result()
