"""Shared fixtures: a small generated dataset (3 episodes of 6-11 frames, two 32x32 cameras,
4-D states, 3-D actions, three tasks, one episode whose task changes midway) and its store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from librobot.data.episode import Episode
from librobot.data.store import write_episodes
from librobot.data.synthetic import synthetic_episodes


def make_episodes(seed: int = 1) -> list[Episode]:
    episodes = synthetic_episodes(3, seed=seed)
    middle = episodes[1]
    middle.task = ["open the drawer"] * 3 + ["close the drawer"] * (middle.length - 3)
    return episodes


def assert_same_episodes(got: list[Episode], expected: list[Episode], *, image_atol: float = 0.0) -> None:
    """Every key, shape, dtype and value (images within ``image_atol`` levels), tasks and lengths."""
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        assert set(a.frames) == set(b.frames), i
        for key in b.frames:
            x, y = a.frames[key], b.frames[key]
            assert x.shape == y.shape and x.dtype == y.dtype, (i, key, x.shape, y.shape, x.dtype, y.dtype)
            if key.startswith("observation.images.") and image_atol:
                assert np.abs(x.astype(np.int16) - y.astype(np.int16)).mean() <= image_atol, (i, key)
            else:
                np.testing.assert_array_equal(x, y, err_msg=f"episode {i} {key}")
        assert a.task == b.task, (i, a.task, b.task)


@pytest.fixture(scope="session")
def episodes() -> list[Episode]:
    return make_episodes()


@pytest.fixture(scope="session")
def store_path(tmp_path_factory: pytest.TempPathFactory, episodes: list[Episode]) -> Path:
    path = tmp_path_factory.mktemp("store") / "demo.store"
    write_episodes(path, episodes, robot_type="synthetic-arm")
    return path
