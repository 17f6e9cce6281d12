"""Shared fixtures: each tiny variant is built once per session (seeded) and reused read-only."""

from __future__ import annotations

import pytest
import torch

HF_TINY = (
    "qwen2-vl-tiny",
    "qwen2.5-vl-tiny",
    "qwen3-vl-tiny",
    "florence-2-tiny",
    "paligemma-tiny",
    "paligemma2-tiny",
    "internvl2-tiny",
    "llava-tiny",
    "kosmos-2-tiny",
)

_CACHE: dict[str, object] = {}


@pytest.fixture(scope="session")
def build_tiny():
    """build_tiny(name) → the registered tiny backbone, built once with seed 0 (eval mode)."""
    from librobot.models import create_vlm

    def get(name: str):
        if name not in _CACHE:
            torch.manual_seed(0)
            _CACHE[name] = create_vlm(name)
        return _CACHE[name]

    return get


@pytest.fixture
def images() -> torch.Tensor:
    """Two samples × two camera views, 64×64, fixed pseudo-random content in [0, 1]."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 2, 3, 64, 64, generator=g)


TEXTS = ["pick up the red block", "open the drawer and put the sponge inside"]
