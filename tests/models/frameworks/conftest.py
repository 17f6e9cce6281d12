"""Shared fixtures for the framework tests: one tiny VLM config and small fixed batches."""

import pytest
import torch

ACTION_DIM, STATE_DIM, HORIZON, BATCH = 4, 6, 8, 3


def tiny_vlm():
    from librobot.models import create_vlm

    torch.manual_seed(0)
    # smaller than the default tiny VLM: the framework tests train every framework on the CPU
    return create_vlm(
        "librobot-tiny-vlm",
        image_size=32,
        patch_size=8,
        tokens_per_view=4,
        dim=64,
        depth=2,
        heads=4,
        kv_heads=2,
        max_text_tokens=32,
    )


def make_batch(seed: int = 0, batch: int = BATCH):
    g = torch.Generator().manual_seed(seed)
    return {
        "images": torch.rand(batch, 3, 32, 32, generator=g),
        "text": ["pick up the red cube", "open the drawer", "push the button"][:batch],
        "proprioception": torch.randn(batch, STATE_DIM, generator=g),
        "actions": torch.randn(batch, HORIZON, ACTION_DIM, generator=g).clamp(-1, 1),
    }


@pytest.fixture
def batch():
    return make_batch()
