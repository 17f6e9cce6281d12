"""The Attention module against a manual float64 computation (masks, GQA, RoPE, ALiBi), and its
fast paths (kernels dispatcher, cached-prefix op, KV cache) against their reference paths."""

import math

import pytest
import torch

from librobot.core.errors import ConfigError, SpecError
from librobot.models.components import Attention, AttentionPool, Transformer
from librobot.models.components.positional import alibi_slopes

D, H = 32, 4


def lin(layer, t):
    out = t @ layer.weight.T
    return out + layer.bias if layer.bias is not None else out


def rope_complex(t, pos, theta=10000.0):
    """Independent RoPE: channel pairs (i, i + d/2) as complex numbers times e^{i·pos·θ_i}."""
    d = t.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.complex(t[..., : d // 2], t[..., d // 2 :])
    z = z * torch.polar(torch.ones_like(inv), pos.to(torch.float64)[:, None] * inv)
    return torch.cat([z.real, z.imag], dim=-1)


def manual(mod, x, context=None, *, visible=None, bias=None, q_pos=None, k_pos=None):
    """softmax(q kᵀ/√d + bias) v in float64, query head h reading kv head h // (H / Hkv)."""
    b, lq, _ = x.shape
    src = x if context is None else context
    lk = src.shape[1]
    hd, hq, hkv = mod.head_dim, mod.num_heads, mod.num_kv_heads
    q = lin(mod.q_proj, x).view(b, lq, hq, hd).transpose(1, 2)
    k = lin(mod.k_proj, src).view(b, lk, hkv, hd).transpose(1, 2)
    v = lin(mod.v_proj, src).view(b, lk, hkv, hd).transpose(1, 2)
    if q_pos is not None:
        q, k = rope_complex(q, q_pos), rope_complex(k, k_pos)
    k = torch.stack([k[:, h // (hq // hkv)] for h in range(hq)], 1)
    v = torch.stack([v[:, h // (hq // hkv)] for h in range(hq)], 1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if bias is not None:
        scores = scores + bias
    if visible is not None:
        scores = scores.masked_fill(~visible[:, None], float("-inf"))
    probs = torch.nan_to_num(scores.softmax(-1), nan=0.0)  # rows with no visible key → zeros
    out = (probs @ v).transpose(1, 2).reshape(b, lq, hq * hd)
    return lin(mod.o_proj, out)


def make(**kw):
    torch.manual_seed(0)
    return Attention(D, H, qkv_bias=True, **kw).double()


@pytest.mark.parametrize("hkv", [4, 2, 1])
def test_self_attention_gqa_causal_padding_matches_manual(hkv):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, D, generator=g, dtype=torch.float64)
    pad = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    mod = make(num_kv_heads=hkv, causal=True)
    i = torch.arange(6)
    visible = (i[None, :] <= i[:, None])[None] & pad[:, None, :]
    torch.testing.assert_close(mod(x, key_padding_mask=pad), manual(mod, x, visible=visible), rtol=1e-10, atol=1e-10)


def test_sliding_window_and_block_masks_match_manual():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 7, D, generator=g, dtype=torch.float64)
    i = torch.arange(7)
    mod = make(num_kv_heads=2, causal=True, window=3)
    visible = ((i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < 3))[None].expand(2, 7, 7)
    torch.testing.assert_close(mod(x), manual(mod, x, visible=visible), rtol=1e-10, atol=1e-10)
    blocks = torch.tensor([0, 0, 0, 1, 1, 2, 2])  # prefix, state, actions (π0 layout)
    mod = make()
    visible = (blocks[None, :] <= blocks[:, None])[None].expand(2, 7, 7)
    torch.testing.assert_close(
        mod(x, q_blocks=blocks, kv_blocks=blocks), manual(mod, x, visible=visible), rtol=1e-10, atol=1e-10
    )


def test_rope_attention_matches_complex_rotation_reference():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, D, generator=g, dtype=torch.float64)
    pos = torch.tensor([3, 4, 7, 8, 20])
    mod = make(num_kv_heads=2, rope=True)
    torch.testing.assert_close(mod(x, positions=pos), manual(mod, x, q_pos=pos, k_pos=pos), rtol=1e-9, atol=1e-10)


def test_alibi_matches_explicit_bias():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 9, D, generator=g, dtype=torch.float64)
    mod = make(num_kv_heads=2, causal=True, alibi=True)
    i = torch.arange(9, dtype=torch.float64)
    bias = -alibi_slopes(H)[:, None, None] * (i[:, None] - i[None, :])
    visible = (i[None, :] <= i[:, None])[None].expand(2, 9, 9)
    # ALiBi runs in float32 (see Attention's docstring), hence the float32 tolerance.
    torch.testing.assert_close(mod(x), manual(mod, x, visible=visible, bias=bias), rtol=1e-5, atol=1e-5)
    # the bias matters: without it the result differs
    assert (manual(mod, x, visible=visible) - mod(x)).abs().max() > 1e-2


def test_cross_attention_with_context_mask_matches_manual():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, D, generator=g, dtype=torch.float64)
    ctx = torch.randn(2, 6, 24, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True] * 6, [True, True, False, True, False, False]])
    torch.manual_seed(0)
    mod = Attention(D, H, num_kv_heads=2, cross=True, context_dim=24).double()
    visible = mask[:, None, :].expand(2, 4, 6)
    torch.testing.assert_close(
        mod(x, ctx, key_padding_mask=mask), manual(mod, x, ctx, visible=visible), rtol=1e-10, atol=1e-10
    )
    # precomputed keys/values (reused across denoising steps) give the same result
    kv = mod.project_kv(ctx)
    torch.testing.assert_close(mod(x, context_kv=kv, key_padding_mask=mask), mod(x, ctx, key_padding_mask=mask))


def test_kernels_backend_matches_reference_backend():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 8, D, generator=g)
    fast = make(num_kv_heads=2, causal=True, rope=True).float()
    ref = Attention(D, H, qkv_bias=True, num_kv_heads=2, causal=True, rope=True, backend="reference")
    ref.load_state_dict(fast.state_dict())
    pad = torch.rand(3, 8, generator=g) > 0.2
    torch.testing.assert_close(fast(x, key_padding_mask=pad), ref(x, key_padding_mask=pad), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_prefix_cache_path_matches_full_attention(causal):
    """past_kv through attention_with_prefix equals attending over the concatenated sequence."""
    g = torch.Generator().manual_seed(7)
    prefix = torch.randn(2, 5, D, generator=g, dtype=torch.float64)
    chunk = torch.randn(2, 3, D, generator=g, dtype=torch.float64)
    prefix_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    mod = make(num_kv_heads=2, rope=True)
    mod.causal = causal
    past = mod.project_kv(prefix)
    cached = mod(chunk, past_kv=past, past_padding_mask=prefix_mask)
    # reference: everything at once, with the prefix visible to all chunk tokens and causal among the chunk
    full_x = torch.cat([prefix, chunk], 1)
    blocks = torch.tensor([0] * 5 + ([1, 2, 3] if causal else [1, 1, 1]))
    pad = torch.cat([prefix_mask, torch.ones(2, 3, dtype=torch.bool)], 1)
    mod.causal = False
    full = mod(full_x, q_blocks=blocks, kv_blocks=blocks, key_padding_mask=pad)
    torch.testing.assert_close(cached, full[:, 5:], rtol=1e-10, atol=1e-10)


def test_incremental_decoding_with_kv_cache_matches_full_forward():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 6, D, generator=g, dtype=torch.float64)
    for kw in ({"rope": True}, {"alibi": True}, {"window": 3}):
        mod = make(num_kv_heads=2, causal=True, **kw)
        full = mod(x)
        out, kv = mod(x[:, :2], return_kv=True)
        steps = [out]
        for t in range(2, 6):
            out, kv = mod(x[:, t : t + 1], past_kv=kv, return_kv=True)
            steps.append(out)
        torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-8, atol=1e-8, msg=str(kw))


def test_transformer_stack_kv_cache_and_context_kv():
    torch.manual_seed(0)
    tr = Transformer(
        D,
        2,
        H,
        num_kv_heads=2,
        causal=True,
        rope=True,
        cross_attention=True,
        context_dim=16,
        mlp="swiglu",
        norm="rmsnorm",
    ).double()
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 5, D, generator=g, dtype=torch.float64)
    ctx = torch.randn(2, 3, 16, generator=g, dtype=torch.float64)
    full = tr(x, context=ctx)
    ckv = tr.context_kv(ctx)
    out, kv = tr(x[:, :3], context_kv=ckv, return_kv=True)
    out2 = tr(x[:, 3:], context_kv=ckv, past_kv=kv)
    torch.testing.assert_close(torch.cat([out, out2], 1), full, rtol=1e-9, atol=1e-9)


def test_attention_pool_ignores_masked_tokens():
    torch.manual_seed(0)
    pool = AttentionPool(D, 4, num_queries=2)
    tokens = torch.randn(2, 5, D)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = pool(tokens, mask)
    tokens2 = tokens.clone()
    tokens2[1, 2:] = 100.0
    torch.testing.assert_close(pool(tokens2, mask), out)
    assert out.shape == (2, 2, D)


def test_attention_errors_name_the_problem():
    with pytest.raises(ConfigError, match="multiple of num_kv_heads"):
        Attention(D, 4, num_kv_heads=3)
    with pytest.raises(ConfigError, match="alibi needs causal"):
        Attention(D, 4, alibi=True)
    with pytest.raises(ConfigError, match="self-attention"):
        Attention(D, 4, cross=True, causal=True)
    with pytest.raises(ConfigError, match="backend"):
        Attention(D, 4, backend="cudnn")
    with pytest.raises(SpecError, match=r"expects x \[B, L, 32\]"):
        Attention(D, 4)(torch.randn(2, 3, 16))
    with pytest.raises(SpecError, match="cross=True"):
        Attention(D, 4)(torch.randn(2, 3, D), torch.randn(2, 3, D))


def test_per_sample_rope_positions_match_shared_positions():
    """[B, L] positions (e.g. left-padded batches) rotate each sample by its own positions."""
    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 4, D, generator=g, dtype=torch.float64)
    mod = make(num_kv_heads=2, rope=True, causal=True)
    pos = torch.tensor([[0, 1, 2, 3], [5, 6, 7, 8]])
    both = mod(x, positions=pos)
    torch.testing.assert_close(both[0], mod(x[:1], positions=pos[0])[0])
    torch.testing.assert_close(both[1], mod(x[1:], positions=pos[1])[0])
    torch.testing.assert_close(
        both[1], manual(mod, x[1:], visible=torch.ones(1, 4, 4, dtype=torch.bool).tril(), q_pos=pos[1], k_pos=pos[1])[0]
    )
