"""Every full-size variant's config against the published checkpoint: parameter count within 2%,
computed on the meta device (no weights allocated), and the headline dimensions."""

from __future__ import annotations

import importlib

import pytest
import torch

from librobot.models import create_vlm
from librobot.models.vlm import _manifest
from librobot.models.vlm.base import count_parameters

FAMILY_MODULES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "florence2", "paligemma", "internvl", "llava", "kosmos2")


def published() -> dict[str, dict]:
    table = {}
    for mod in FAMILY_MODULES:
        table.update(importlib.import_module(f"librobot.models.vlm.{mod}").SIZES)
    return table


def test_every_full_variant_has_a_published_count():
    assert sorted(published()) == sorted(name for name, *_ in _manifest.FULL)


@pytest.mark.parametrize("name", [name for name, *_ in _manifest.FULL])
def test_parameter_count_matches_published(name):
    size = published()[name]
    vlm = create_vlm(name, device="meta")
    assert all(p.is_meta for p in vlm.parameters())  # nothing was allocated
    count = count_parameters(vlm)
    rel = abs(count - size["published_params"]) / size["published_params"]
    assert rel < 0.02, f"{name}: {count / 1e9:.3f}B vs published {size['published_params'] / 1e9:.2f}B"
    # headline numbers of the language model are the table's (the count alone could hide a swap)
    tc = vlm.text_config()
    text = size.get("text", {})
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size"):
        if key in text:
            assert getattr(tc, key) == text[key], (name, key)
    assert vlm.get_embedding_dim() == vlm.kv_layout.hidden_size


def test_meta_build_is_cheap_and_complete():
    vlm = create_vlm("qwen2-vl-72b", device="meta")
    assert count_parameters(vlm) > 7e10
    assert vlm.kv_layout.num_layers == 80 and vlm.kv_layout.num_kv_heads == 8 and vlm.kv_layout.head_dim == 128
    assert next(vlm.parameters()).device == torch.device("meta")
