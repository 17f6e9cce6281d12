"""The reference ops against independent formulations (float64), so the spec itself is trusted."""

import math

import pytest
import torch
import torch.nn.functional as F

from librobot.kernels import reference as ref


def sdpa_with_mask(q, k, v, mask):
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if mask is not None:  # SDPA gives NaN on fully masked rows; the spec says zeros
        out = torch.where(mask.any(-1, keepdim=True), out, torch.zeros_like(out))
    return out


@pytest.mark.parametrize("hq,hkv", [(4, 4), (8, 2)])
def test_attention_masks_match_sdpa_with_explicit_masks(hq, hkv):
    g = torch.Generator().manual_seed(0)
    b, lq, lk, d = 2, 5, 9, 16
    q = torch.randn(b, hq, lq, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, hkv, lk, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, hkv, lk, d, generator=g, dtype=torch.float64)
    pos_q = torch.arange(lq)[:, None] + (lk - lq)
    pos_k = torch.arange(lk)[None, :]
    q_blocks = torch.tensor([1, 1, 2, 2, 3])
    kv_blocks = torch.tensor([0, 0, 0, 1, 1, 1, 2, 3, 3])
    padding = torch.ones(b, lk, dtype=torch.bool)
    padding[1, :3] = False
    cases = {
        "none": ({}, None),
        "causal": ({"causal": True}, pos_k <= pos_q),
        "window": ({"causal": True, "window": 3}, (pos_k <= pos_q) & (pos_q - pos_k < 3)),
        "blocks": ({"q_blocks": q_blocks, "kv_blocks": kv_blocks}, kv_blocks[None, :] <= q_blocks[:, None]),
    }
    for name, (kwargs, mask2d) in cases.items():
        mask = None if mask2d is None else mask2d.expand(b, 1, lq, lk)
        torch.testing.assert_close(ref.attention(q, k, v, **kwargs), sdpa_with_mask(q, k, v, mask), msg=name)
    mask = padding[:, None, None, :].expand(b, 1, lq, lk) & (pos_k <= pos_q)
    got = ref.attention(q, k, v, causal=True, key_padding_mask=padding)
    torch.testing.assert_close(got, sdpa_with_mask(q, k, v, mask))


def test_fully_masked_rows_are_zero_not_nan():
    q = torch.randn(1, 2, 3, 8, dtype=torch.float64)
    k = torch.randn(1, 2, 3, 8, dtype=torch.float64)
    out = ref.attention(q, k, k, q_blocks=torch.tensor([0, 1, 1]), kv_blocks=torch.tensor([1, 1, 1]))
    assert torch.all(out[:, :, 0] == 0) and torch.isfinite(out).all()
    assert out[:, :, 1].abs().sum() > 0


def test_attention_with_prefix_equals_attention_over_concatenation():
    g = torch.Generator().manual_seed(1)
    b, h, lp, lq, d = 2, 4, 7, 3, 8
    t = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    q, k, v = t(b, h, lq, d), t(b, h, lq, d), t(b, h, lq, d)
    kp, vp = t(b, h, lp, d), t(b, h, lp, d)
    pad = torch.ones(b, lp, dtype=torch.bool)
    pad[0, -2:] = False
    got = ref.attention_with_prefix(q, k, v, kp, vp, prefix_padding_mask=pad, causal=True)
    keys, values = torch.cat([kp, k], 2), torch.cat([vp, v], 2)
    visible = torch.cat([pad, torch.ones(b, lq, dtype=torch.bool)], 1)[:, None, None, :] & (
        torch.arange(lp + lq)[None, :] <= (torch.arange(lq)[:, None] + lp)
    )
    torch.testing.assert_close(got, sdpa_with_mask(q, keys, values, visible.expand(b, 1, lq, lp + lq)))


def test_ddim_with_true_noise_recovers_clean_sample_in_one_step():
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(4, 10, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 10, 3, generator=g, dtype=torch.float64)
    acp = 0.3
    x_t = math.sqrt(acp) * x0 + math.sqrt(1 - acp) * eps
    torch.testing.assert_close(ref.ddim_step(x_t, eps, None, acp_t=acp, acp_prev=1.0), x0)
    # DDPM's last step is its mean, which is x0 as well
    torch.testing.assert_close(ref.ddpm_step(x_t, eps, None, acp_t=acp, acp_prev=1.0), x0)


def test_ddpm_step_matches_posterior_formula():
    g = torch.Generator().manual_seed(3)
    x0, eps, z = (torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(3))
    acp_t, acp_prev = 0.5, 0.8
    x_t = math.sqrt(acp_t) * x0 + math.sqrt(1 - acp_t) * eps
    beta = 1 - acp_t / acp_prev
    mean = (math.sqrt(acp_prev) * beta * x0 + math.sqrt(1 - beta) * (1 - acp_prev) * x_t) / (1 - acp_t)
    expected = mean + math.sqrt(beta * (1 - acp_prev) / (1 - acp_t)) * z
    torch.testing.assert_close(ref.ddpm_step(x_t, eps, z, acp_t=acp_t, acp_prev=acp_prev), expected)


def test_flow_samplers_integrate_a_known_field():
    # v(x, t) = -x has the solution x(t_end) = x(t_start) · exp(-(t_end - t_start))
    x = torch.randn(2, 6, dtype=torch.float64)
    times = torch.linspace(1.0, 0.0, 201).tolist()
    exact = x * math.exp(1.0)
    euler = ref.flow_sample(lambda y, t: -y, x, times, method="euler")
    heun = ref.flow_sample(lambda y, t: -y, x, times, method="heun")
    assert (heun - exact).abs().max() < (euler - exact).abs().max() / 50
    torch.testing.assert_close(heun, exact, rtol=1e-4, atol=0)


def test_edm_with_ideal_denoiser_lands_on_the_data_point():
    target = torch.randn(3, 4, dtype=torch.float64)
    sigmas = [80.0, 20.0, 5.0, 1.0, 0.2, 0.0]
    x = target + sigmas[0] * torch.randn(3, 4, dtype=torch.float64)
    out = ref.edm_sample(lambda y, s: target.expand_as(y), x, sigmas)
    torch.testing.assert_close(out, target)


def test_attention_with_prefix_padding_when_own_keys_differ_from_queries():
    # regression: the chunk's own (never padded) keys were sized by Lq instead of by k
    g = torch.Generator().manual_seed(4)
    b, h, lp, lq, lown, d = 2, 2, 6, 3, 5, 8
    t = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    q, k, v, kp, vp = t(b, h, lq, d), t(b, h, lown, d), t(b, h, lown, d), t(b, h, lp, d), t(b, h, lp, d)
    pad = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    got = ref.attention_with_prefix(q, k, v, kp, vp, prefix_padding_mask=pad)
    visible = torch.cat([pad, torch.ones(b, lown, dtype=torch.bool)], 1)[:, None, None, :].expand(b, 1, lq, lp + lown)
    torch.testing.assert_close(got, sdpa_with_mask(q, torch.cat([kp, k], 2), torch.cat([vp, v], 2), visible))
