"""The per-instruction cache of a frozen backbone against the backbone itself."""

import pytest
import torch

from librobot.models import create_vla, create_vlm
from librobot.models.frameworks.text_cache import TextOnlyCache

TEXTS = ["reach the goal", "press the button down", "open the door by pulling the handle", "reach the goal"]


@pytest.mark.parametrize("backbone", ["librobot-tiny-vlm", "qwen2-vl-tiny", "paligemma-tiny"])
def test_cached_outputs_equal_the_backbone_in_any_batch_composition(backbone):
    torch.manual_seed(0)
    vlm = create_vlm(backbone).eval()
    cache = TextOnlyCache()
    with torch.no_grad():
        first = cache(vlm, TEXTS[:2])  # fills two entries and checks itself against the backbone
        assert cache.enabled is True
        batch = cache(vlm, TEXTS[::-1])  # other order, other padding, a new instruction
        reference = vlm(None, TEXTS[::-1])
    torch.testing.assert_close(batch.hidden_states, reference.hidden_states, rtol=1e-4, atol=1e-5)
    assert torch.equal(batch.attention_mask, reference.attention_mask.bool())
    assert first.hidden_states.shape[0] == 2 and cache.hits >= 2


def test_cache_forgets_when_the_backbone_changes():
    vlm = create_vlm("librobot-tiny-vlm").eval()
    cache = TextOnlyCache()
    with torch.no_grad():
        before = cache(vlm, TEXTS[:1]).hidden_states.clone()
        for p in vlm.parameters():
            p.add_(0.05 * torch.randn_like(p))  # e.g. an optimizer step or load_state_dict
        after = cache(vlm, TEXTS[:1]).hidden_states
        reference = vlm(None, TEXTS[:1]).hidden_states
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, reference, rtol=1e-4, atol=1e-5)


def test_a_stochastic_backbone_turns_the_cache_off():
    vlm = create_vlm("librobot-tiny-vlm").train()
    vlm.embed.register_forward_hook(lambda m, i, o: torch.nn.functional.dropout(o, 0.5, training=True))
    cache = TextOnlyCache()
    with torch.no_grad():
        cache(vlm, TEXTS)
    assert cache.enabled is False


def test_frozen_groot_state_only_uses_the_cache_and_matches_uncached_predictions():
    torch.manual_seed(0)
    vla = create_vla("groot", action_dim=3, state_dim=4, horizon=4, cameras=[])
    state = torch.randn(2, 4)
    cached = vla.predict_action(None, TEXTS[:2], state)
    assert vla.text_cache.enabled is True and vla.text_cache.misses == 2
    vla.text_cache.enabled = False  # the reference path: the backbone every call
    torch.testing.assert_close(vla.predict_action(None, TEXTS[:2], state), cached, rtol=1e-4, atol=1e-5)
