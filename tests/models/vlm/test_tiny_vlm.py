"""librobot-tiny-vlm: no files, several cameras, prefix KV cache, save/load, the cache's consumers."""

from __future__ import annotations

import pytest
import torch

from librobot.core.errors import CheckpointError, ConfigError, SpecError
from librobot.models import create_vlm
from librobot.models.vlm.kv_cache import PrefixKV, attend_to_prefix

from .conftest import TEXTS


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_vlm("librobot-tiny-vlm")


def test_forward_shapes_values_and_cameras(tiny, images):
    with torch.no_grad():
        out = tiny(images, TEXTS)
    per_view = tiny.cfg.tokens_per_view
    n_bytes = [len(t.encode()) for t in TEXTS]
    assert out.hidden_states.shape == (2, 2 * per_view + 1 + max(n_bytes), tiny.cfg.dim)
    assert out.attention_mask.sum(1).tolist() == [2 * per_view + 1 + n for n in n_bytes]
    assert out.image_mask.sum(1).tolist() == [2 * per_view] * 2
    assert torch.isfinite(out.hidden_states).all() and (out.hidden_states[~out.attention_mask] == 0).all()
    # swapping the cameras changes the features (views are told apart by their view embedding)
    with torch.no_grad():
        tiny.view_embed.normal_(std=0.5)
        a = tiny(images, TEXTS).hidden_states
        b = tiny(images[:, [1, 0]], TEXTS).hidden_states
        tiny.view_embed.zero_()
    assert not torch.allclose(a, b, atol=1e-4)
    # 96x96 images are resized to the tower's 64x64
    with torch.no_grad():
        big = tiny(torch.rand(1, 3, 3, 96, 96), "go")
    assert big.image_mask.sum() == 3 * per_view


def test_prefix_cache_equals_recomputation_and_is_bidirectional(tiny, images):
    g = torch.Generator().manual_seed(4)
    suffix = torch.randn(2, 6, tiny.cfg.dim, generator=g)
    with torch.no_grad():
        prefix = tiny(images, TEXTS, return_kv=True)
        full = tiny(images, TEXTS, suffix_embeds=suffix)
        cached = tiny.extend(prefix.prefix_kv, suffix)
    assert torch.allclose(full.hidden_states[:, : prefix.num_prefix_tokens], prefix.hidden_states, atol=1e-5)
    assert torch.allclose(full.suffix_hidden_states, cached.hidden_states, atol=1e-5)
    assert prefix.prefix_kv.layout.prefix_attention == "bidirectional"
    # bidirectional prefix: the last instruction byte reaches the first image token
    with torch.no_grad():
        other = tiny(images, ["pick up the red blocks", TEXTS[1]])
    first = prefix.image_mask[0].nonzero()[0, 0]
    first_other = other.image_mask[0].nonzero()[0, 0]
    assert not torch.allclose(prefix.hidden_states[0, first], other.hidden_states[0, first_other], atol=1e-5)


def test_prefix_kv_feeds_an_action_expert(tiny, images):
    """The documented form is enough for a π0-style expert: its own q/k/v over the cached prefix.
    ``attend_to_prefix`` equals float64 attention over the concatenated, masked keys."""
    with torch.no_grad():
        kv = tiny(images, TEXTS, return_kv=True).prefix_kv
    layout = kv.layout
    g = torch.Generator().manual_seed(5)
    s = 4
    q = torch.randn(2, layout.num_heads, s, layout.head_dim, generator=g)
    k = torch.randn(2, layout.num_kv_heads, s, layout.head_dim, generator=g)
    v = torch.randn(2, layout.num_kv_heads, s, layout.head_dim, generator=g)
    pk, pv = kv.layer(1)
    keys = torch.cat([pk, k], 2).double().repeat_interleave(layout.num_heads // layout.num_kv_heads, 1)
    vals = torch.cat([pv, v], 2).double().repeat_interleave(layout.num_heads // layout.num_kv_heads, 1)
    scores = q.double() @ keys.transpose(-1, -2) / layout.head_dim**0.5

    def reference(visible: torch.Tensor) -> torch.Tensor:
        return scores.masked_fill(~visible, float("-inf")).softmax(-1) @ vals

    prefix_visible = kv.attention_mask[:, None, None, :].expand(2, 1, s, kv.length)
    full = torch.cat([prefix_visible, torch.ones(2, 1, s, s, dtype=torch.bool)], -1)
    out = attend_to_prefix(q, k, v, kv, layer=1)
    assert torch.allclose(out.double(), reference(full), atol=1e-5)
    # causal suffix with a padded last token (cached-prefix op vs masked op of librobot.kernels)
    suffix_mask = torch.tensor([[True] * s, [True] * (s - 1) + [False]])
    causal = torch.cat([prefix_visible, torch.ones(s, s, dtype=torch.bool).tril().expand(2, 1, s, s)], -1)
    causal = causal & torch.cat([torch.ones(2, kv.length, dtype=torch.bool), suffix_mask], 1)[:, None, None, :]
    out = attend_to_prefix(q, k, v, kv, layer=1, causal=True, suffix_mask=suffix_mask)
    assert torch.allclose(out.double(), reference(causal), atol=1e-5)
    # many samples per observation without recomputing the prefix
    rep = kv.repeat_interleave(3)
    assert rep.batch_size == 6 and torch.equal(rep.keys[0][3], kv.keys[0][1])


def test_prefix_kv_validates_its_form(tiny, images, build_tiny):
    with torch.no_grad():
        kv = tiny(images, TEXTS, return_kv=True).prefix_kv
    with pytest.raises(SpecError, match=r"expected .*\[B, H_kv, L, D_head\]"):
        PrefixKV((*kv.keys[:-1], kv.keys[-1][:, :, :3]), kv.values, kv.attention_mask, kv.next_position, kv.layout)
    other = build_tiny("qwen2-vl-tiny")
    with pytest.raises(SpecError, match="layout"):
        other.extend(kv, torch.zeros(2, 1, other.get_embedding_dim()))


def test_save_and_load_round_trip(tiny, images, tmp_path):
    folder = tiny.save_pretrained(tmp_path / "tiny")
    loaded = create_vlm("librobot-tiny-vlm", pretrained=str(folder))
    with torch.no_grad():
        assert torch.equal(tiny(images, TEXTS).hidden_states, loaded(images, TEXTS).hidden_states)
    with pytest.raises(CheckpointError, match="does not exist"):
        create_vlm("tiny-vlm", pretrained=str(tmp_path / "nope"))


def test_options_errors_and_logits(tiny, images):
    with pytest.raises(ConfigError, match="tokens_per_view"):
        create_vlm("librobot-tiny-vlm", tokens_per_view=5)
    with pytest.raises(SpecError, match="at most 4 views"):
        tiny(torch.rand(1, 5, 3, 64, 64), "x")
    rt2 = create_vlm("librobot-tiny-vlm", extra_tokens=256)
    with torch.no_grad():
        logits = rt2.compute_logits(rt2(images, TEXTS).hidden_states)
    assert logits.shape[-1] == 256 + 4 + 256
    assert tiny.get_num_parameters() < 2_000_000
