"""π0's prefix is bidirectional on every backbone: the transformers families whose own prefix is
causal (Qwen2/2.5/3-VL, InternVL, LLaVA, KosMos-2) run it as one block when π0 asks, and the
cached prefix stays exact; ``Pi0Config.prefix_attention="native"`` keeps their causal one."""

import pytest
import torch

from librobot.core.errors import ConfigError
from librobot.models import create_vla, create_vlm
from librobot.models.vlm.prefix_mask import prefix_lm_mask

from .conftest import ACTION_DIM, HORIZON, STATE_DIM, make_batch

CAUSAL_FAMILIES = ("qwen2-vl-tiny", "qwen2.5-vl-tiny", "qwen3-vl-tiny", "internvl2-tiny", "llava-tiny", "kosmos-2-tiny")
# same token count, different last word: only a token after the image block differs
TEXTS = ("pick up the red block", "pick up the red clock")


def build(backbone, **kw):
    torch.manual_seed(0)  # the same backbone and expert weights for every prefix_attention setting
    return create_vla("pi_zero", vlm=backbone, action_dim=ACTION_DIM, state_dim=STATE_DIM, horizon=HORIZON, **kw).eval()


def first_image_keys(policy, text):
    """Every layer's keys of the first image token in π0's prefix cache for one sample (no
    padding, so nothing to align), and the ``PrefixKV`` the backbone returned."""
    b = make_batch(batch=1)
    seen = []
    hook = policy.vlm.register_forward_hook(lambda module, args, out: seen.append(out.prefix_kv))
    with torch.no_grad():
        cache = policy.prefix_cache(policy.prepare(b["images"], [text], b["proprioception"]))
        first = policy.vlm.prepare_prefix(b["images"], [text])["image_mask"][0].nonzero()[0, 0]
    hook.remove()
    assert cache.mask.all()
    return [k[0, :, first] for k, _ in cache.kv], seen[0]


@pytest.mark.parametrize("backbone", CAUSAL_FAMILIES)
def test_early_prefix_token_sees_later_ones_only_when_bidirectional(backbone):
    bidirectional, native = build(backbone), build(backbone, prefix_attention="native")
    keys_a, kv = first_image_keys(bidirectional, TEXTS[0])
    keys_b, kv_b = first_image_keys(bidirectional, TEXTS[1])
    assert kv.length == kv_b.length
    assert kv.layout.prefix_attention == "bidirectional"
    # layer 0 keys come from the token's own embedding; from layer 1 on they carry what it attended to
    assert torch.equal(keys_a[0], keys_b[0])
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(keys_a[1:], keys_b[1:])), backbone
    causal_a, kv_native = first_image_keys(native, TEXTS[0])
    causal_b, _ = first_image_keys(native, TEXTS[1])
    assert kv_native.layout.prefix_attention == "causal"
    assert all(torch.equal(a, b) for a, b in zip(causal_a, causal_b)), backbone  # later text is unseen
    # the native prefix is the backbone's own, untouched: the same keys as a plain call
    with torch.no_grad():
        plain = native.vlm(make_batch(batch=1)["images"], [TEXTS[0]], return_kv=True).prefix_kv
    assert all(torch.equal(a, b) for a, b in zip(plain.keys, kv_native.keys))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("backbone", CAUSAL_FAMILIES)
def test_the_language_model_applies_the_4d_mask_it_is_given(backbone, attn):
    """A causal mask handed over in the 4-D form gives exactly the native hidden states, so the
    form is read as meant (True/0 = may attend) by this attention implementation."""
    torch.manual_seed(0)
    vlm = create_vlm(backbone, attn_implementation=attn)
    b = make_batch(batch=2)
    with torch.no_grad():
        p = vlm.prepare_prefix(b["images"], b["text"])
        mask = p["mask"]
        assert not mask.all()  # left padding is in play
        native, _ = vlm._language(p["embeds"], mask, p["positions"], None, False, dict(p["extras"]))
        # the whole sequence as "suffix": every token sees itself and the real tokens before it
        causal = prefix_lm_mask(mask, mask.shape[1], p["embeds"].dtype, attn, backbone)
        given, _ = vlm._language(
            p["embeds"], mask, p["positions"], None, False, {**p["extras"], "prefix_lm_mask": causal}
        )
    torch.testing.assert_close(given[mask], native[mask], rtol=0, atol=1e-6)


@pytest.mark.parametrize("backbone", CAUSAL_FAMILIES)
def test_pi0_actions_are_deterministic_finite_and_follow_the_setting(backbone):
    b = make_batch(batch=2)
    args = (b["images"], b["text"], b["proprioception"])
    policy = build(backbone, num_inference_steps=3)
    first = policy.predict_action(*args)
    again = policy.predict_action(*args)
    assert torch.equal(first, again)
    assert torch.isfinite(first).all() and first.abs().max() > 0.1
    native = build(backbone, num_inference_steps=3, prefix_attention="native")
    assert (native.predict_action(*args) - first).abs().max() > 1e-5  # the prefix mask reaches the actions
    out = policy.train()(*args, b["actions"])
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("backbone", CAUSAL_FAMILIES)
def test_cached_bidirectional_prefix_equals_recomputation_in_float64(backbone):
    policy = build(backbone, num_inference_steps=3).double()
    b = make_batch(seed=11, batch=2)
    args = (b["images"].double(), b["text"], b["proprioception"].double())
    noise = torch.randn(2, HORIZON, ACTION_DIM, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cached = policy.predict_action(*args, noise=noise)
    recomputed = policy.predict_action(*args, noise=noise, cache_prefix=False)
    assert cached.dtype == torch.float64 and cached.abs().max() > 0.1
    torch.testing.assert_close(cached, recomputed, rtol=0, atol=1e-10)


@pytest.mark.parametrize("backbone", CAUSAL_FAMILIES)
def test_backbone_suffix_over_a_bidirectional_cache_equals_the_one_pass_forward(backbone):
    # transformers' KosMos-2 fills its float32 causal mask with float64's minimum (overflow): float32 there
    dtype = torch.float32 if backbone == "kosmos-2-tiny" else torch.float64
    atol = 2e-5 if dtype == torch.float32 else 1e-10
    torch.manual_seed(0)
    vlm = create_vlm(backbone).to(dtype)
    b = make_batch(seed=12, batch=2)
    g = torch.Generator().manual_seed(4)
    suffix = torch.randn(2, 3, vlm.get_embedding_dim(), generator=g, dtype=dtype)
    suffix_mask = torch.tensor([[True, True, True], [True, True, False]])
    with torch.no_grad():
        prefix = vlm(b["images"], b["text"], return_kv=True, prefix_attention="bidirectional")
        full = vlm(
            b["images"], b["text"], suffix_embeds=suffix, suffix_mask=suffix_mask, prefix_attention="bidirectional"
        )
        extended = vlm.extend(prefix.prefix_kv, suffix, suffix_mask, return_kv=True)
    assert extended.prefix_kv.layout.prefix_attention == "bidirectional"  # a grown cache keeps the record
    real = prefix.attention_mask
    torch.testing.assert_close(
        full.hidden_states[:, : prefix.num_prefix_tokens][real], prefix.hidden_states[real], rtol=0, atol=atol
    )
    torch.testing.assert_close(
        full.suffix_hidden_states[suffix_mask], extended.hidden_states[suffix_mask], rtol=0, atol=atol
    )


def test_setting_is_validated_and_backbones_refuse_what_they_cannot_run(monkeypatch):
    with pytest.raises(ConfigError, match=r"prefix_attention='bidirect'.*did you mean 'bidirectional'"):
        build("qwen2-vl-tiny", prefix_attention="bidirect")
    vlm = create_vlm("paligemma-tiny")
    assert vlm.prefix_attention_modes == ("bidirectional",)
    with pytest.raises(ConfigError, match="bidirectional attention only"):
        vlm(make_batch(batch=1)["images"], ["a"], prefix_attention="causal")
    with pytest.raises(ConfigError, match="not one of"):
        vlm(make_batch(batch=1)["images"], ["a"], prefix_attention="sideways")
    qwen = create_vlm("qwen2-vl-tiny")
    monkeypatch.setattr(type(qwen), "prefix_attention_modes", property(lambda self: ("causal",)))
    with pytest.raises(ConfigError, match="prefix_attention='native'"):
        build(qwen)
    assert build(qwen, prefix_attention="native").config.prefix_attention == "native"


@pytest.mark.parametrize("backbone", ["paligemma-tiny", None])
def test_natively_bidirectional_backbones_are_called_as_before(backbone):
    """PaliGemma and the built-in backbones get no prefix_attention argument (nothing to change)."""
    b = make_batch(batch=1)
    policy = build(backbone)
    calls = []
    policy.vlm.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True)
    policy.predict_action(b["images"], b["text"], b["proprioception"])
    assert calls == [{"return_kv": True}]


def test_lora_wrapped_backbone_keeps_the_bidirectional_prefix():
    pytest.importorskip("peft")
    from librobot.models.adapters import LoRAAdapter

    torch.manual_seed(0)
    policy = build(LoRAAdapter(create_vlm("qwen2-vl-tiny"), rank=2))
    b = make_batch(batch=1)
    _, kv = first_image_keys(policy, TEXTS[0])
    assert kv.layout.prefix_attention == "bidirectional"
    assert torch.isfinite(policy.predict_action(b["images"], b["text"][:1], b["proprioception"])).all()
