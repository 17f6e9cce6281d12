"""π0-style: the cached prefix is exact and computed once, the block-wise mask holds, and the
expert works over Hugging Face backbones (the common contract is in test_frameworks_common.py)."""

import pytest
import torch

from librobot.core.errors import ConfigError
from librobot.models import create_vla

from .conftest import ACTION_DIM, HORIZON, STATE_DIM, make_batch, tiny_vlm


def build(vlm=None, **kw):
    torch.manual_seed(0)
    return create_vla(
        "pi_zero", vlm=vlm or tiny_vlm(), action_dim=ACTION_DIM, state_dim=STATE_DIM, horizon=HORIZON, **kw
    )


def count_calls(module):
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_cached_prefix_equals_recomputation_in_float64_and_runs_the_vlm_once():
    policy = build(num_inference_steps=4).double()
    b = make_batch()
    calls = count_calls(policy.vlm)
    cached = policy.predict_action(b["images"].double(), b["text"], b["proprioception"])
    assert len(calls) == 1  # one backbone pass for all 4 denoising steps
    recomputed = policy.predict_action(b["images"].double(), b["text"], b["proprioception"], cache_prefix=False)
    assert len(calls) == 1 + 4  # the reference path: the prefix at every step
    assert cached.dtype == torch.float64
    torch.testing.assert_close(cached, recomputed, rtol=0, atol=1e-12)
    assert cached.abs().max() > 0.1  # a real chunk, not zeros


def test_block_wise_mask_state_ignores_actions_actions_see_each_other_prefix_ignores_suffix():
    policy = build().eval()
    b = make_batch()
    inputs = policy.prepare(b["images"], b["text"], b["proprioception"])
    with torch.no_grad():
        cache = policy.prefix_cache(inputs)
        state = policy.state_tokens(inputs)
        a1 = torch.randn(3, HORIZON, policy.expert.width)
        a2 = a1.clone()
        a2[:, -1] += 1.0  # change only the last action token's input
        h1 = policy.suffix_hidden(cache, state, a1)
        h2 = policy.suffix_hidden(cache, state, a2)
    assert torch.equal(h1[:, 0], h2[:, 0])  # the state block never sees the action block
    assert (h1[:, 1] - h2[:, 1]).abs().max() > 1e-3  # the first action sees the last one (bidirectional)
    # the joint [state; actions] pass equals caching the state block once, then running actions alone
    with torch.no_grad():
        with_state = policy.expert.extend(cache, state)
        cached = policy.expert(a1, with_state)
    torch.testing.assert_close(cached, h1[:, 1:], rtol=1e-5, atol=1e-5)
    # the prefix never sees the suffix: the backbone's keys/values inside the training pass do not
    # depend on the actions or the state
    seen = []
    policy.vlm.register_forward_hook(lambda m, i, out: seen.append([k.clone() for k in out.prefix_kv.keys]))
    policy.train()
    other = make_batch(seed=5)
    policy(b["images"], b["text"], b["proprioception"], b["actions"])
    policy(b["images"], b["text"], other["proprioception"], other["actions"])
    assert all(torch.equal(x, y) for x, y in zip(*seen))


def test_expert_is_narrower_than_the_vlm_and_has_its_own_layers():
    policy = build()
    layout = policy.vlm.kv_layout
    assert policy.expert.width == layout.hidden_size // 2
    assert len(policy.expert.blocks.layers) == layout.num_layers
    attn = policy.expert.blocks.layers[0].self_attn
    assert (attn.num_heads, attn.num_kv_heads, attn.head_dim) == (
        layout.num_heads,
        layout.num_kv_heads,
        layout.head_dim,
    )
    vlm_ids = {id(p) for p in policy.vlm.parameters()}
    assert not any(id(p) in vlm_ids for p in policy.expert.parameters())
    # the last backbone layer's output half cannot reach the expert: frozen, also after unfreezing
    policy.unfreeze_backbone()
    frozen = [n for n, p in policy.vlm.named_parameters() if not p.requires_grad]
    assert frozen == policy.unused_backbone_parameters and "lm.transformer.norm.weight" in frozen
    assert all(p.requires_grad for n, p in policy.vlm.named_parameters() if n not in frozen)


@pytest.mark.parametrize("backbone", ["paligemma-tiny", "florence-2-tiny"])  # RoPE / learned positions
def test_hugging_face_backbones(backbone):
    policy = build(vlm=backbone, num_inference_steps=3)
    b = make_batch(batch=2)
    args = (b["images"], b["text"], b["proprioception"])
    out = policy(*args, b["actions"])
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert not [n for n, p in policy.named_parameters() if p.requires_grad and p.grad is None]
    torch.testing.assert_close(
        policy.predict_action(*args), policy.predict_action(*args, cache_prefix=False), rtol=1e-5, atol=1e-5
    )


def test_flow_settings_through_head_overrides_and_errors():
    policy = build(head={"num_inference_steps": 2})
    calls = count_calls(policy.vlm)
    b = make_batch()
    policy.predict_action(b["images"], b["text"], b["proprioception"], cache_prefix=False)
    assert len(calls) == 2
    with pytest.raises(ConfigError, match="no separate action head"):
        build(head={"hidden_dim": 3})
    with pytest.raises(ConfigError, match="time_sampling"):
        build(time_sampling="betta")


def test_real_time_chunking_guidance_pulls_the_chunk_toward_the_executing_prefix():
    from functools import partial

    from librobot.serve.rtc import guided_velocity

    policy = build()
    with torch.no_grad():  # a policy whose own chunk is far from the prefix
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    b = make_batch()
    args = (b["images"], b["text"], b["proprioception"])
    prefix = torch.full((3, HORIZON, ACTION_DIM), 0.5)
    weights = torch.zeros(3, HORIZON)
    weights[:, :3] = 1.0  # the first 3 steps are executing: follow them
    free = policy.predict_action(*args)
    guided = policy.predict_action(
        *args, guidance=partial(guided_velocity, prefix_actions=prefix, prefix_weights=weights)
    )
    err = lambda chunk: (chunk[:, :3] - 0.5).abs().mean()  # noqa: E731
    assert err(guided) < 0.25 * err(free)
    assert torch.equal(policy.predict_action(*args), free)  # guidance does not stick
