import random

import numpy as np
import pytest

from librobot.core.seeding import capture_rng_state, restore_rng_state, seed_everything


def draw():
    # torch is imported by the caller before seeding: core seeds torch only once it is loaded
    import torch

    return random.random(), float(np.random.rand()), float(torch.rand(1))


@pytest.mark.torch
def test_seed_everything_repeats_draws_of_every_library():
    import torch  # noqa: F401  (loaded before seeding, as every torch user does)

    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    seed_everything(124)
    assert draw() != first


@pytest.mark.torch
def test_capture_and_restore_rng_state_continue_the_same_stream():
    import json

    import torch  # noqa: F401

    seed_everything(7)
    draw()
    state = json.loads(json.dumps(capture_rng_state()))  # must survive JSON
    expected = [draw() for _ in range(3)]
    seed_everything(99)
    restore_rng_state(state)
    assert [draw() for _ in range(3)] == expected


def test_seed_range_is_checked():
    with pytest.raises(ValueError, match="seed must be in"):
        seed_everything(-1)
