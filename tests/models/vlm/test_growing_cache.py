"""``extend(..., return_kv=True)`` grows the prefix cache, so autoregressive decoding can run one
new token at a time: extending token by token over the grown cache gives the same hidden states
as extending the whole suffix at once, for every backbone family."""

from __future__ import annotations

import pytest
import torch

from .conftest import HF_TINY, TEXTS

BACKBONES = ("librobot-tiny-vlm", "pretrained-small", *HF_TINY)


@pytest.mark.parametrize("name", BACKBONES)
def test_token_by_token_equals_the_whole_suffix(build_tiny, images, name):
    vlm = build_tiny(name)
    g = torch.Generator().manual_seed(3)
    s = 4
    suffix = torch.randn(2, s, vlm.get_embedding_dim(), generator=g)
    with torch.no_grad():
        prefix = vlm(images, TEXTS, return_kv=True).prefix_kv
        whole = vlm.extend(prefix, suffix).hidden_states
        cache, steps = prefix, []
        for i in range(s):
            out = vlm.extend(cache, suffix[:, i : i + 1], return_kv=True)
            steps.append(out.hidden_states)
            cache = out.prefix_kv
    stepwise = torch.cat(steps, dim=1)
    assert torch.allclose(stepwise, whole, atol=2e-5, rtol=1e-4), (stepwise - whole).abs().max()
    assert whole.abs().mean() > 1e-3  # real activations, not zeros
    # the grown cache: prefix + suffix tokens, positions moved on, the original left untouched
    assert cache.length == prefix.length + s and len(cache) == len(prefix)
    assert cache.keys[0].shape[2] == prefix.length + s
    assert torch.equal(cache.next_position, prefix.next_position + s)
    assert torch.equal(cache.attention_mask[:, : prefix.length], prefix.attention_mask)
    assert cache.attention_mask[:, prefix.length :].all()
    assert torch.equal(cache.keys[-1][:, :, : prefix.length], prefix.keys[-1])
    # without return_kv nothing is grown
    with torch.no_grad():
        assert vlm.extend(prefix, suffix[:, :1]).prefix_kv is None
