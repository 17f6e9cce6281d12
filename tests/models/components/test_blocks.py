"""Norms, positions, MLPs, conditioning and transformer blocks against their formulas."""

import math

import pytest
import torch

from librobot.core.errors import ConfigError, SpecError
from librobot.core.registry import get_registry
from librobot.models.components import (
    MLP,
    ALiBi,
    FeedForward,
    FiLM,
    GroupNorm,
    LayerNorm,
    RMSNorm,
    RotaryEmbedding,
    RotaryTables,
    SinusoidalPositionalEmbedding,
    TimestepEmbedding,
    Transformer,
    TransformerBlock,
    _manifest,
    apply_rotary,
    build_norm,
    rotate,
    sinusoidal_embedding,
)


def test_rmsnorm_matches_formula_and_keeps_dtype():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 16, generator=g, dtype=torch.float64)
    norm = RMSNorm(16, eps=1e-6).double()
    norm.weight.data = torch.randn(16, generator=g, dtype=torch.float64)
    expected = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected, rtol=1e-12, atol=1e-12)
    xb = x.to(torch.bfloat16)
    assert norm.float()(xb).dtype == torch.bfloat16


def test_layernorm_and_groupnorm_match_formulas():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 12, generator=g, dtype=torch.float64)
    ln = LayerNorm(12).double()
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(ln(x), (x - mu) / torch.sqrt(var + 1e-5), rtol=1e-12, atol=1e-12)
    img = torch.randn(2, 12, 3, 3, generator=g, dtype=torch.float64)
    gn = GroupNorm(4, 12).double()
    grouped = img.view(2, 4, 3 * 9)
    expected = (
        (grouped - grouped.mean(-1, keepdim=True)) / torch.sqrt(grouped.var(-1, unbiased=False, keepdim=True) + 1e-5)
    ).view_as(img)
    torch.testing.assert_close(gn(img), expected, rtol=1e-12, atol=1e-12)
    # channel-last layout gives the same numbers as channel-first
    tokens = img.flatten(2).transpose(1, 2)  # [B, L, C]
    gn_last = GroupNorm(4, 12, channels_last=True).double()
    torch.testing.assert_close(gn_last(tokens), gn(img).flatten(2).transpose(1, 2))
    with pytest.raises(ConfigError, match="divisible"):
        GroupNorm(5, 12)
    with pytest.raises(ConfigError, match="unknown norm"):
        build_norm("batchnorm", 8)


def test_sinusoidal_embedding_values():
    t = torch.tensor([0.0, 1.0, 7.5])
    emb = sinusoidal_embedding(t, 8, max_period=10000.0)
    freqs = torch.tensor([10000.0 ** (-i / 4) for i in range(4)])
    expected = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], -1)
    torch.testing.assert_close(emb, expected)
    table = SinusoidalPositionalEmbedding(8, max_len=16)
    torch.testing.assert_close(table(3), sinusoidal_embedding(torch.arange(3.0), 8))
    with pytest.raises(SpecError, match="max_len"):
        table(17)
    assert TimestepEmbedding(16)(torch.tensor([1.0, 5.0])).shape == (2, 16)


def test_rope_relative_position_property_and_norm_preservation():
    g = torch.Generator().manual_seed(2)
    rope = RotaryEmbedding(16)
    q = torch.randn(1, 1, 1, 16, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 16, generator=g, dtype=torch.float64)

    def dot(m, n):
        return float((rope(q, torch.tensor([m])) * rope(k, torch.tensor([n]))).sum())

    assert dot(5, 2) == pytest.approx(dot(105, 102), rel=1e-9)
    assert dot(5, 2) == pytest.approx(dot(3, 0), rel=1e-9)
    assert dot(5, 2) != pytest.approx(dot(5, 4), rel=1e-3)
    rotated = rope(q.expand(1, 1, 4, 16), torch.arange(4) * 13)
    torch.testing.assert_close(rotated.norm(dim=-1), q.norm(dim=-1).expand(1, 1, 4))
    # partial rotary leaves the tail channels alone
    partial = RotaryEmbedding(16, rotary_dim=8)
    out = partial(q, torch.tensor([9]))
    torch.testing.assert_close(out[..., 8:], q[..., 8:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("rotary_dim", [16, 10])
@pytest.mark.parametrize("per_sample", [False, True])
def test_rotate_with_tables_equals_the_textbook_rotation(dtype, rotary_dim, per_sample):
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    rope = RotaryEmbedding(16, rotary_dim=rotary_dim, theta=500.0)
    # [B, L, H, D] projected then viewed as [B, H, L, D]: the strided layout attention rotates
    x = torch.randn(2, 7, 3, 16, generator=g, dtype=torch.float64).to(dtype).transpose(1, 2)
    positions = torch.rand(2, 7, generator=g) * 50 if per_sample else torch.arange(7) * 3
    work = torch.float64 if dtype == torch.float64 else torch.float32
    tables = rope.tables(positions, work)
    assert isinstance(tables, RotaryTables) and tables.cos.shape[-1] == rotary_dim
    got = rotate(x, tables)
    assert got.dtype == dtype and got.shape == x.shape
    torch.testing.assert_close(got, apply_rotary(x, *rope.cos_sin(positions, work)), rtol=0, atol=0)
    torch.testing.assert_close(rope(x, positions), got, rtol=0, atol=0)
    # float64 reference: rotate channel pairs (i, i + d/2) by angle p · theta^(-2i/d)
    h = rotary_dim // 2
    ang = positions.to(torch.float64)[..., None] * 500.0 ** (-torch.arange(h, dtype=torch.float64) * 2 / rotary_dim)
    if per_sample:
        ang = ang[:, None]
    x64 = x.to(torch.float64)
    a, b = x64[..., :h], x64[..., h:rotary_dim]
    want = torch.cat([a * ang.cos() - b * ang.sin(), b * ang.cos() + a * ang.sin(), x64[..., rotary_dim:]], -1)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 1e-2}[dtype]
    rel = float((got.to(torch.float64) - want).norm() / want.norm())
    assert rel < tol
    assert torch.equal(got[..., rotary_dim:], x[..., rotary_dim:])


def test_rotate_gradients_match_the_textbook_rotation():
    rope = RotaryEmbedding(8)
    positions = torch.arange(5) * 7
    x = torch.randn(2, 2, 5, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 5, 8, dtype=torch.float64)
    (grad_fast,) = torch.autograd.grad((rotate(x, rope.tables(positions, torch.float64)) * w).sum(), x)
    (grad_ref,) = torch.autograd.grad((apply_rotary(x, *rope.cos_sin(positions, torch.float64)) * w).sum(), x)
    torch.testing.assert_close(grad_fast, grad_ref, rtol=1e-12, atol=1e-12)
    assert float(grad_fast.abs().max()) > 0.1


def test_alibi_bias_values():
    bias = ALiBi(8).bias(3, 5)  # queries at positions 2, 3, 4
    slope0 = 2 ** (-1.0)
    assert float(bias[0, 0, 0]) == pytest.approx(-slope0 * 2)
    assert float(bias[0, 2, 4]) == 0.0
    assert float(bias[7, 2, 0]) == pytest.approx(-(2 ** (-8.0)) * 4)
    assert ALiBi(6).slopes.shape == (6,)


@pytest.mark.parametrize("kind", ["gelu", "relu", "swiglu", "geglu"])
def test_feed_forward_kinds(kind):
    torch.manual_seed(0)
    ff = FeedForward(16, kind=kind).double()
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    if kind in ("swiglu", "geglu"):
        a, b = ff.up(x).chunk(2, -1)
        act = torch.nn.functional.silu(a) if kind == "swiglu" else torch.nn.functional.gelu(a)
        torch.testing.assert_close(ff(x), ff.down(act * b))
        assert ff.up.out_features == 2 * 48  # ⅔·4·16 rounded up to a multiple of 8
    else:
        assert ff(x).shape == x.shape
    with pytest.raises(ConfigError, match="unknown feed-forward"):
        FeedForward(16, kind="swish_glu")


def test_mlp_and_film():
    mlp = MLP(4, [8, 8], 3, activation="relu", layer_norm=True)
    assert mlp(torch.randn(5, 4)).shape == (5, 3)
    film = FiLM(6, 4)
    x, c = torch.randn(2, 7, 4), torch.randn(2, 6)
    torch.testing.assert_close(film(x, c), x)  # identity at init
    film.proj.bias.data[:4] = 1.0  # γ = 1 → doubles x
    torch.testing.assert_close(film(x, c), 2 * x)
    with pytest.raises(SpecError, match="FiLM"):
        film(x, torch.randn(2, 5))


def test_adaln_block_is_identity_at_init_and_learns_to_use_cond():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, cond_dim=8, cross_attention=True)
    x, ctx, cond = torch.randn(2, 5, 16), torch.randn(2, 3, 16), torch.randn(2, 8)
    torch.testing.assert_close(block(x, context=ctx, cond=cond), x)
    # after perturbing the modulation the output depends on cond (and per-token cond works)
    torch.nn.init.normal_(block.modulation.proj[1].weight, std=0.1)
    a = block(x, context=ctx, cond=cond)
    b = block(x, context=ctx, cond=cond + 1)
    assert (a - b).abs().max() > 1e-3
    assert block(x, context=ctx, cond=cond[:, None].expand(2, 5, 8)).shape == x.shape
    torch.testing.assert_close(block(x, context=ctx, cond=cond[:, None].expand(2, 5, 8)), a)
    with pytest.raises(SpecError, match="cond_dim"):
        block(x, context=ctx)
    with pytest.raises(SpecError, match="cross-attention"):
        block(x, cond=cond)


def test_block_gradients_flow_to_all_parameters():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, cross_attention=True, mlp="geglu", norm="rmsnorm", causal=True, rope=True)
    x = torch.randn(2, 5, 16, requires_grad=True)
    block(x, context=torch.randn(2, 3, 16)).pow(2).sum().backward()
    missing = [n for n, p in block.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing and x.grad is not None and math.isfinite(float(x.grad.abs().sum()))


def _per_layer(stack, x, **kwargs):
    """The stack with every layer rotating its own queries/keys (no shared cos/sin)."""
    past = kwargs.pop("past_kv", None)
    for i, layer in enumerate(stack.layers):
        x = layer(x, past_kv=None if past is None else past[i], **kwargs)
    return stack.norm(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transformer_rotary_angles_formed_once_match_per_layer_rotation(dtype):
    torch.manual_seed(0)
    stack = Transformer(32, 3, 4, num_kv_heads=2, norm="rmsnorm", mlp="swiglu", rope=True, causal=True).to(dtype).eval()
    x = torch.randn(2, 6, 32, dtype=dtype)
    with torch.no_grad():
        plain = stack(x)
        torch.testing.assert_close(plain, _per_layer(stack, x), rtol=0, atol=0)
        # per-sample positions (left padding shifts them) and a cached prefix the tokens follow
        positions = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 0, 1, 2, 3]])
        moved = stack(x, positions=positions)
        torch.testing.assert_close(moved, _per_layer(stack, x, positions=positions), rtol=0, atol=0)
        assert float((moved - plain).abs().max()) > 1e-3  # positions do reach the rotation
        _, past = stack(x, return_kv=True)
        y = torch.randn(2, 2, 32, dtype=dtype)
        torch.testing.assert_close(stack(y, past_kv=past), _per_layer(stack, y, past_kv=past), rtol=0, atol=0)
        # a continuation at positions 6, 7 equals those rows of the whole sequence run at once
        whole = stack(torch.cat([x, y], dim=1))
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(stack(y, past_kv=past), whole[:, 6:], rtol=tol, atol=tol)


def test_every_component_manifest_entry_resolves():
    registry = get_registry("component")
    for name, target, aliases, _ in _manifest.ENTRIES:
        obj = registry.get(name)
        assert f"{obj.__module__}:{obj.__qualname__}" == target
        for alias in aliases:
            assert registry.canonical(alias) == name
    attn = registry.create("sliding_window_attention", dim=16, num_heads=2, window=4)
    assert attn.window == 4 and attn.causal
    assert registry.create("flash_attention", dim=16, num_heads=2).backend == "kernels"
    assert registry.create("standard_attention", dim=16, num_heads=2).backend == "reference"
