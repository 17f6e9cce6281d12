"""The real-time chunking math: soft-mask weights, guided velocity, guided sampling."""

import math

import numpy as np
import pytest
from _serve_testlib import MixtureFlowPolicy

from librobot.core.batch import OBS_STATE
from librobot.core.errors import SpecError
from librobot.serve.rtc import (
    guidance_scale,
    guided_velocity,
    inpaint_denoised,
    pad_prefix,
    prefix_weights,
    rtc_flow_sample,
)


def test_prefix_weights_match_the_papers_schedule_by_hand():
    w = prefix_weights(horizon=8, frozen=2, overlap=5)
    # c_i = (5 - i) / (5 - 2 + 1) for i = 2, 3, 4; w = c (e^c - 1) / (e - 1)
    expected = [1, 1] + [c * (math.exp(c) - 1) / (math.e - 1) for c in (3 / 4, 2 / 4, 1 / 4)] + [0, 0, 0]
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert np.all(np.diff(w) <= 0)  # non-increasing
    np.testing.assert_allclose(prefix_weights(6, 1, 4, "linear"), [1, 3 / 4, 2 / 4, 1 / 4, 0, 0])
    np.testing.assert_allclose(prefix_weights(6, 2, 4, "hard"), [1, 1, 0, 0, 0, 0])
    with pytest.raises(SpecError, match="frozen <= overlap"):
        prefix_weights(6, 5, 4)
    with pytest.raises(SpecError, match="schedule"):
        prefix_weights(6, 1, 4, "cosine")


def test_pad_prefix_pads_with_zero_weight_and_rejects_bad_input():
    a, w = pad_prefix(np.ones((3, 2)), np.array([1.0, 0.5, 0.25]), horizon=5)
    assert a.shape == (5, 2) and a[3:].sum() == 0
    np.testing.assert_allclose(w, [1, 0.5, 0.25, 0, 0])
    with pytest.raises(SpecError, match="prefix_actions"):
        pad_prefix(np.ones((6, 2)), None, horizon=5)
    with pytest.raises(SpecError, match="NaN"):
        pad_prefix(np.array([[np.nan, 0.0]]), None, horizon=5)
    with pytest.raises(SpecError, match=r"\[0, 1\]"):
        pad_prefix(np.ones((2, 2)), np.array([1.5, 0.0]), horizon=5)


def test_guided_velocity_by_hand_with_and_without_a_vjp():
    rng = np.random.default_rng(0)
    x, v, y = rng.normal(size=(3, 4, 2))
    w = np.array([1.0, 0.5, 0.0, 0.0])
    t = 0.6
    # k = min(10, (tau^2 + t^2) / (tau t)) with tau = 0.4: (0.16 + 0.36) / 0.24
    k = 0.52 / 0.24
    assert guidance_scale(t) == pytest.approx(k)
    assert guidance_scale(1.0) == 10.0 and guidance_scale(0.99) == 10.0  # clipped near pure noise
    denoised = x - t * v
    expected = v - k * w[:, None] * (y - denoised)
    np.testing.assert_allclose(guided_velocity(v, x, t, y, w), expected)
    # Zero weights leave the velocity untouched.
    np.testing.assert_allclose(guided_velocity(v, x, t, y, np.zeros(4)), v)
    # With a VJP (here of a linear velocity v = M x, so dÂ/dx = I - t M), the error goes through it.
    m = rng.normal(size=(2, 2))
    vjp = lambda e: e @ (np.eye(2) - t * m)  # noqa: E731 - e^T (I - t M) for row vectors
    np.testing.assert_allclose(
        guided_velocity(v, x, t, y, w, vjp=vjp), v - k * (w[:, None] * (y - denoised)) @ (np.eye(2) - t * m)
    )
    np.testing.assert_allclose(inpaint_denoised(denoised, y, w), denoised + w[:, None] * (y - denoised))


def test_guided_sampling_follows_the_prefix_and_picks_its_mode():
    policy = MixtureFlowPolicy(horizon=16, seed=3)
    state = np.array([1.0, 0.0])
    up, down = policy.modes(state)
    # Free samples land on one mode or the other, both occurring.
    picks = []
    for _ in range(20):
        chunk = policy.predict_chunk({OBS_STATE: state})
        d_up, d_down = np.abs(chunk - up).max(), np.abs(chunk - down).max()
        assert min(d_up, d_down) < 0.1
        picks.append(d_up < d_down)
    assert 0 < sum(picks) < 20
    # With the "down" plan as prefix (4 frozen steps, decaying to step 10), every sample follows it.
    w = prefix_weights(16, 4, 10)[:10]
    for _ in range(10):
        chunk = policy.predict_chunk({OBS_STATE: state}, prefix_actions=down[:10], prefix_weights=w)
        assert np.abs(chunk - down).max() < 0.1
        assert np.abs(chunk[:4] - down[:4]).max() < 0.05


def test_rtc_flow_sample_without_prefix_is_plain_euler():
    x0 = np.ones((3, 2))
    out = rtc_flow_sample(lambda x, t: x * 0 + 2.0, x0, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(out, x0 - 2.0)
