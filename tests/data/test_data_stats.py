"""Streaming statistics: exact moments and extremes, quantiles within the reported bound."""

from __future__ import annotations

import json

import numpy as np
import pytest

from librobot.core.specs import FeatureSpec
from librobot.data.stats import ImageStats, NumericStats, StatsAccumulator, compute_stats


def batches(rng: np.random.Generator) -> list[np.ndarray]:
    # heavy tails, a shifted later batch (forces the histogram range to grow both ways), a constant dim
    out = []
    for i in range(12):
        x = rng.standard_t(3, size=(int(rng.integers(1, 400)), 3)) * [1.0, 10.0, 0.0] + [0.0, 5.0, 2.5]
        if i == 7:
            x[:, 0] += 40.0
        if i == 9:
            x[:, 0] -= 60.0
        out.append(x.astype(np.float32))
    return out


def test_moments_and_extremes_are_exact():
    data = batches(np.random.default_rng(0))
    stats = NumericStats((3,))
    for b in data:
        stats.update(b)
    full = np.concatenate(data).astype(np.float64)
    result = stats.result()
    assert result["count"] == len(full)
    np.testing.assert_allclose(result["mean"], full.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result["std"], full.std(0), rtol=1e-10, atol=1e-12)
    assert result["min"] == full.min(0).tolist() and result["max"] == full.max(0).tolist()


@pytest.mark.parametrize("bins", [64, 1024])
def test_quantiles_within_the_reported_bound(bins):
    data = batches(np.random.default_rng(1))
    stats = NumericStats((3,), bins=bins)
    for b in data:
        stats.update(b)
    full = np.concatenate(data).astype(np.float64)
    result = stats.result()
    bound = np.asarray(result["q_error_bound"])
    for name, q in (("q01", 0.01), ("q99", 0.99)):
        error = np.abs(np.asarray(result[name]) - np.quantile(full, q, axis=0))
        assert np.all(error <= bound), (name, error, bound)
    span = full.max(0) - full.min(0)
    assert np.all(bound[:2] <= 4 * span[:2] / bins)  # the stated "a few times range/bins"
    assert result["q01"][2] == result["q99"][2] == 2.5  # constant dim: exact


def test_first_batch_spanning_the_data_gives_half_a_bin_of_range():
    x = np.random.default_rng(2).normal(size=(5000, 2))
    stats = NumericStats((2,), bins=1024)
    stats.update(x)
    bound = np.asarray(stats.result()["q_error_bound"])
    np.testing.assert_allclose(bound, (x.max(0) - x.min(0)) / 1024 / 2, rtol=1e-5)


def test_image_stats_are_exact_per_channel():
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, size=(n, 5, 7, 3), dtype=np.uint8) for n in (4, 1, 9)]
    stats = ImageStats(3)
    for f in frames:
        stats.update(f)
    full = np.concatenate(frames).reshape(-1, 3).astype(np.float64) / 255.0
    result = stats.result()
    np.testing.assert_allclose(result["mean"], full.mean(0), rtol=1e-12)
    np.testing.assert_allclose(result["std"], full.std(0), rtol=1e-10)
    np.testing.assert_allclose(result["q01"], np.quantile(full, 0.01, axis=0), rtol=1e-12)
    np.testing.assert_allclose(result["q99"], np.quantile(full, 0.99, axis=0), rtol=1e-12)
    assert result["min"] == full.min(0).tolist() and result["count"] == len(full)


def test_accumulator_state_survives_json_and_continues_identically(episodes):
    features = {
        "action": FeatureSpec("action", (3,)),
        "observation.images.top": FeatureSpec("observation.images.top", (3, 32, 32), "uint8", kind="image"),
    }
    frames = [{k: e.frames[k] for k in features} for e in episodes]
    straight = compute_stats(frames, features)
    first = StatsAccumulator(features)
    first.update(frames[0])
    resumed = StatsAccumulator.from_state(features, json.loads(json.dumps(first.to_state())))
    for f in frames[1:]:
        resumed.update(f)
    assert resumed.result() == straight
