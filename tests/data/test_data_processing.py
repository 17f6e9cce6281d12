"""Normalisation processor (math, clamping, exact inversion, JSON state) and image transforms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from librobot.core.errors import ConfigError
from librobot.core.registry import get_registry
from librobot.data.normalize import NormalizationProcessor
from librobot.data.store import EpisodeStore
from librobot.data.transforms import ColorJitter, Compose, ImageNormalize, RandomCropResize

STATS = {
    "action": {
        "mean": [1.0, -2.0],
        "std": [2.0, 0.0],
        "min": [-3.0, -4.0],
        "max": [5.0, 0.0],
        "q01": [-1.0, -3.0],
        "q99": [3.0, -1.0],
    },
    "observation.state": {"mean": [0.5], "std": [0.25], "min": [0.0], "max": [1.0]},
    "observation.images.top": {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.5]},
}


def test_modes_compute_the_documented_affine_maps():
    x = np.array([[3.0, -3.0], [-5.0, 10.0]])
    q = NormalizationProcessor.from_stats(STATS, {"action": "q01_q99"})
    np.testing.assert_allclose(q.normalize_value("action", x), [[1.0, -1.0], [-1.0, 1.0]])  # clamped
    m = NormalizationProcessor.from_stats(STATS, {"action": "min_max"})
    np.testing.assert_allclose(m.normalize_value("action", x), [[0.5, -0.5], [-1.5, 6.0]])  # not clamped by default
    s = NormalizationProcessor.from_stats(STATS, {"action": "mean_std"})
    np.testing.assert_allclose(s.normalize_value("action", x), [[1.0, -1.0], [-3.0, 12.0]])  # std 0 → scale 1
    img = NormalizationProcessor.from_stats(STATS, {"observation.images.top": "mean_std"})
    out = img.normalize_value("observation.images.top", np.full((2, 3, 4, 4), 0.6))
    np.testing.assert_allclose(out[0, :, 0, 0], [1.0, 0.4, 0.0])


def test_inversion_is_exact_in_numpy_and_torch():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.9, 2.9, size=(64, 2))  # inside [q01, q99] of dim 0; dim 1 unclamped by min_max
    for mode in ("mean_std", "min_max", "q01_q99"):
        proc = NormalizationProcessor.from_stats(
            STATS, {"action": mode, "observation.state": "mean_std"}, clamp={"action": False}
        )
        back = proc.unnormalize_value("action", proc.normalize_value("action", x))
        np.testing.assert_allclose(back, x, rtol=0, atol=1e-14)
        t = torch.tensor(x, dtype=torch.float32)
        tb = proc.unnormalize_value("action", proc.normalize_value("action", t))
        assert tb.dtype == torch.float32 and torch.allclose(tb, t, atol=2e-6, rtol=0)
    clamped = NormalizationProcessor.from_stats(STATS, {"action": "q01_q99"})
    assert clamped.unnormalize_value(
        "action", clamped.normalize_value("action", np.array([[100.0, -100.0]]))
    ).tolist() == [[3.0, -3.0]]


def test_state_round_trips_through_json_and_files(tmp_path):
    proc = NormalizationProcessor.from_stats(STATS)
    again = NormalizationProcessor.from_dict(json.loads(json.dumps(proc.to_dict())))
    batch = {"action": np.array([[0.3, -2.5]]), "observation.state": np.array([[0.75]]), "task": "x"}
    assert again.normalize(batch)["observation.state"].tolist() == [[1.0]]
    np.testing.assert_array_equal(again.normalize(batch)["action"], proc.normalize(batch)["action"])
    path = proc.save(tmp_path / "normalizer.json")
    assert NormalizationProcessor.load(path).to_dict() == proc.to_dict()
    with pytest.raises(ConfigError, match=r"statistics of 'observation.state' lack \['q01', 'q99'\]"):
        NormalizationProcessor.from_stats(STATS, {"observation.state": "q01_q99"})
    with pytest.raises(ConfigError, match="unknown mode 'zscore'"):
        NormalizationProcessor.from_stats(STATS, {"action": "zscore"})


def test_built_from_store_stats_through_the_registry(store_path):
    stats = EpisodeStore(store_path).stats
    proc = get_registry("transform").create("normalizer", stats)
    actions = np.concatenate([EpisodeStore(store_path).read("action", 0, 27)])
    y = proc.normalize_value("action", actions)
    assert y.min() >= -1.0 and y.max() <= 1.0 and np.mean(np.abs(y) == 1.0) < 0.1


def test_random_crop_resize_keeps_shape_and_is_consistent_over_time():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 20, 30)
    crop = RandomCropResize(scale=(0.5, 0.9), generator=gen)
    out = crop(images)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    same = torch.stack([images[0], images[0]])
    twin = crop(same)
    assert torch.equal(twin[0], twin[1])  # one crop for every frame of the history
    crop.eval()
    center = RandomCropResize(scale=0.25, size=(10, 15)).eval()(images)
    assert torch.equal(center, images[..., 5:15, 7:22])  # center crop (10x15 of 20x30), no resize needed
    resized = RandomCropResize(scale=0.25).eval()(images)
    expected = torch.nn.functional.interpolate(
        images[..., 5:15, 7:22], size=(20, 30), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(resized, expected)


def test_color_jitter_and_normalize():
    gen = torch.Generator().manual_seed(1)
    images = {"observation.images.top": torch.rand(2, 3, 8, 8), "observation.state": torch.ones(2, 4)}
    jitter = ColorJitter(0.4, 0.4, 0.4, 0.1, generator=gen)
    out = jitter(images)
    assert out["observation.state"] is images["observation.state"]
    top = out["observation.images.top"]
    assert (
        top.shape == (2, 3, 8, 8)
        and 0.0 <= top.min()
        and top.max() <= 1.0
        and not torch.equal(top, images["observation.images.top"])
    )
    identity = ColorJitter(0.0, 0.0, 0.0, 0.0)(images)["observation.images.top"]
    torch.testing.assert_close(identity, images["observation.images.top"])
    gray = torch.full((1, 3, 4, 4), 0.5)
    torch.testing.assert_close(ColorJitter(0, 0, 0, 0.25)(gray), gray, atol=1e-6, rtol=0)  # hue leaves gray alone
    norm = ImageNormalize()
    x = torch.rand(3, 5, 5)
    torch.testing.assert_close(norm.inverse(norm(x)), x)
    torch.testing.assert_close(norm(torch.tensor([0.485, 0.456, 0.406])[:, None, None]), torch.zeros(3, 1, 1))
    pipeline = Compose([RandomCropResize(0.8), ColorJitter()]).eval()
    assert pipeline(images)["observation.images.top"].shape == (2, 3, 8, 8)
