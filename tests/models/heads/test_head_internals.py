"""Head internals against references: schedules, OT coupling vs brute force, tokenizers, the
cached fast paths (conditioning K/V across denoising steps, autoregressive KV cache) vs their
recompute reference paths, k-means, edge filling, and the FAST tokenizer plumbing."""

import itertools
import math

import numpy as np
import pytest
import torch

from librobot.core.errors import ConfigError, MissingExtraError, SpecError
from librobot.models import create_action_head
from librobot.models.action_heads.autoregressive.tokenizers import UniformBins
from librobot.models.action_heads.base import edge_fill
from librobot.models.action_heads.diffusion.schedules import alphas_cumprod, ddim_timesteps, karras_sigmas
from librobot.models.action_heads.flow_matching.coupling import (
    coupling_cost,
    exact_assignment,
    ot_pairing,
    sinkhorn_plan,
)
from librobot.models.action_heads.synthetic import ChunkTask, energy_distance


def test_schedules_match_their_formulas():
    acp = alphas_cumprod(10, "linear", 1e-4, 0.02)
    betas = np.linspace(1e-4, 0.02, 10)
    np.testing.assert_allclose(acp.numpy(), np.cumprod(1 - betas), rtol=1e-12)
    cos = alphas_cumprod(50, "squaredcos_cap_v2")
    f = lambda t: math.cos((t / 50 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert float(cos[24]) == pytest.approx(f(25) / f(0), rel=1e-9)  # ᾱ_t = f(t+1)/f(0) while β < 0.999
    assert bool((cos[1:] < cos[:-1]).all()) and 0 < float(cos[-1]) < 1e-3
    assert ddim_timesteps(100, 10) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    assert ddim_timesteps(50, 50) == list(range(49, -1, -1))
    sig = karras_sigmas(5, 0.002, 80.0, 7.0)
    assert sig[0] == pytest.approx(80.0) and sig[-2] == pytest.approx(0.002) and sig[-1] == 0.0
    assert all(a > b for a, b in itertools.pairwise(sig))


def test_exact_ot_assignment_matches_brute_force_and_beats_identity():
    g = torch.Generator().manual_seed(0)
    x, n = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    cost = coupling_cost(x, n)
    perm = exact_assignment(cost)
    best = min(sum(float(cost[i, p[i]]) for i in range(6)) for p in itertools.permutations(range(6)))
    assert sum(float(cost[i, perm[i]]) for i in range(6)) == pytest.approx(best, rel=1e-12)
    assert sorted(perm.tolist()) == list(range(6))
    assert best < float(cost.diag().sum())


def test_sinkhorn_plan_is_doubly_stochastic_and_near_optimal():
    g = torch.Generator().manual_seed(1)
    x, n = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    cost = coupling_cost(x, n)
    plan = sinkhorn_plan(cost, reg=0.01, iters=500)
    # the last half-iteration fits the column marginals exactly; the rows converge to them
    torch.testing.assert_close(plan.sum(0), torch.full((8,), 1 / 8, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(plan.sum(1), torch.full((8,), 1 / 8, dtype=torch.float64), atol=1e-3, rtol=0)
    optimal = float(cost[torch.arange(8), exact_assignment(cost)].mean())
    assert float((plan * cost).sum()) == pytest.approx(optimal, rel=0.05)


def test_conditional_ot_pairs_only_within_equal_conditions():
    g = torch.Generator().manual_seed(2)
    cond = torch.tensor([[0.0, 1.0]] * 4 + [[3.0, -1.0]] * 4)
    x, n = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    perm = ot_pairing(x, n, cond=cond, cond_weight=10.0)
    assert set(perm[:4].tolist()) == {0, 1, 2, 3} and set(perm[4:].tolist()) == {4, 5, 6, 7}
    free = ot_pairing(x, n, cond=cond, cond_weight=0.0)
    assert float(coupling_cost(x, n)[torch.arange(8), free].sum()) <= float(
        coupling_cost(x, n)[torch.arange(8), perm].sum()
    )
    # padded coordinates do not enter the cost
    valid = torch.ones(8, 5)
    valid[:, 3:] = 0
    x2 = x.clone()
    x2[:, 3:] = 50.0
    torch.testing.assert_close(coupling_cost(x2, n, valid=valid), coupling_cost(x[:, :3], n[:, :3]))


def test_uniform_bins_round_trip_within_half_a_bin():
    bins = UniformBins(256)
    a = torch.rand(3, 4, 2) * 2 - 1
    ids = bins.encode(a)
    assert ids.shape == (3, 8) and int(ids.min()) >= 0 and int(ids.max()) <= 255
    assert float((bins.decode(ids, 4, 2) - a).abs().max()) <= 1 / 256 + 1e-6
    assert bins.encode(torch.tensor([[[-5.0, 5.0]]])).tolist() == [[0, 255]]


def test_edge_fill_repeats_the_last_real_step():
    a = torch.arange(8.0).view(1, 4, 2)
    valid = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert edge_fill(a, valid).tolist() == [[[0, 1], [2, 3], [2, 3], [2, 3]]]


@pytest.mark.parametrize("name", ["ddim", "ddpm", "edm", "flow_matching"])
def test_cached_conditioning_matches_per_step_recompute(name):
    torch.manual_seed(0)
    head = (
        create_action_head(
            name,
            action_dim=3,
            horizon=4,
            cond_dim=8,
            hidden_dim=32,
            depth=2,
            num_heads=4,
            num_train_timesteps=10,
            num_inference_steps=3,
        )
        if name != "flow_matching"
        else create_action_head(
            name, action_dim=3, horizon=4, cond_dim=8, hidden_dim=32, depth=2, num_heads=4, num_inference_steps=3
        )
    )
    for p in head.parameters():  # non-trivial weights everywhere (the output layer starts at zero)
        torch.nn.init.normal_(p, std=0.2)
    tokens, mask = torch.randn(2, 5, 8), torch.tensor([[True] * 5, [True] * 2 + [False] * 3])
    fast = head.predict(tokens, cond_mask=mask, generator=torch.Generator().manual_seed(0))
    ref = head.predict(tokens, cond_mask=mask, generator=torch.Generator().manual_seed(0), cache_cond=False)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    assert float(fast.abs().max()) > 1e-3


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_autoregressive_kv_cache_matches_full_recompute(temperature, dct_tokenizer_registered):
    for kw in ({}, {"tokenizer": "test-dct", "max_tokens": 12}):
        torch.manual_seed(0)
        head = create_action_head(
            "autoregressive", action_dim=2, horizon=4, cond_dim=8, hidden_dim=32, depth=2, num_heads=4, **kw
        ).eval()
        tokens, mask = torch.randn(3, 5, 8), torch.tensor([[True] * 5, [True] * 2 + [False] * 3, [False] + [True] * 4])
        ids, logits = head.generate(
            tokens, cond_mask=mask, temperature=temperature, generator=torch.Generator().manual_seed(1)
        )
        ids_ref, logits_ref = head.generate(
            tokens, cond_mask=mask, temperature=temperature, generator=torch.Generator().manual_seed(1), use_cache=False
        )
        assert ids.tolist() == ids_ref.tolist()
        finite = torch.isfinite(logits_ref)
        torch.testing.assert_close(logits[finite], logits_ref[finite], rtol=1e-4, atol=1e-4)


def test_fast_tokenizer_plumbing(dct_tokenizer_registered):
    tok = dct_tokenizer_registered(scale=20.0)
    head = create_action_head(
        "fast", action_dim=2, horizon=4, cond_dim=8, tokenizer=tok, hidden_dim=32, depth=1, num_heads=4, max_tokens=10
    )
    # the config records what rebuilds the tokenizer: the registry name and its state
    assert head.config.tokenizer == "test-dct" and head.config.tokenizer_state == {"scale": 20.0, "max_abs": 40}
    rebuilt = type(head).from_config(head.get_config())
    assert rebuilt.tokenizer.tokenizer.scale == 20.0
    actions = torch.tensor([[[0.1, -0.2], [0.15, -0.1], [0.2, 0.0], [0.25, 0.1]]])
    ids, weight = head.tokenize(actions, None)
    seq = tok.encode(actions.numpy())[0]
    assert (
        ids[0, : len(seq)].tolist() == seq and int(ids[0, len(seq)]) == head.eos and float(weight.sum()) == len(seq) + 1
    )
    small = create_action_head(
        "fast", action_dim=2, horizon=4, cond_dim=8, tokenizer=tok, hidden_dim=32, depth=1, num_heads=4, max_tokens=2
    )
    with pytest.raises(SpecError, match="raise max_tokens"):
        small(torch.randn(1, 8), actions)
    with pytest.raises(MissingExtraError, match=r"librobot-models\[fast\]"):
        create_action_head("autoregressive", tokenizer="no-such-tokenizer")
    with pytest.raises(ConfigError, match="ActionTokenizerInterface"):
        create_action_head("fast", tokenizer=object())


def test_edm_preconditioning_is_identity_at_zero_noise_and_loss_weight_balances():
    torch.manual_seed(0)
    head = create_action_head("edm", action_dim=2, horizon=3, cond_dim=4, hidden_dim=16, depth=1, num_heads=2)
    prepared = head.denoiser.prepare(head.condition(torch.randn(2, 4)))
    x = torch.randn(2, 3, 2)
    # c_skip → 1 and c_out → 0 as σ → 0: D(x; σ) ≈ x
    torch.testing.assert_close(head._edm_denoise(x, torch.full((2,), 1e-6), prepared), x, rtol=1e-4, atol=1e-5)
    # with F ≡ 0 (zero-initialised output) D = c_skip·x: at σ = σ_data, c_skip = 1/2
    torch.testing.assert_close(head._edm_denoise(x, torch.full((2,), 0.5), prepared), 0.5 * x)


def test_hybrid_fit_centers_recovers_clusters():
    task = ChunkTask(bimodal=True, num_conditions=2, horizon=4, action_dim=2)
    _, actions, _, _ = task.sample(200, torch.Generator().manual_seed(0))
    head = create_action_head("hybrid", action_dim=2, horizon=4, cond_dim=16, num_bins=4, hidden_dim=16)
    centers = head.fit_centers(actions, generator=torch.Generator().manual_seed(1))
    truth = task.modes.flatten(0, 1)  # 4 true chunk prototypes
    err = torch.cdist(truth.flatten(1), centers.flatten(1)).min(dim=1).values
    assert float(err.max()) < 0.05 and bool(head.centers_ready)
    with pytest.raises(SpecError, match="at least num_bins"):
        head.fit_centers(actions[:3])


def test_energy_distance_separates_distributions():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 4, generator=g), torch.randn(300, 4, generator=g)
    assert abs(energy_distance(x, y)) < 0.05
    assert energy_distance(x, y + 1.0) > 0.5


def test_fast_head_with_librobot_data_fast_tokenizer_through_the_registry():
    """Integration with the real FAST tokenizer (librobot-data, found through the core registry)."""
    import json

    from librobot.core.registry import get_registry
    from librobot.models.action_heads.synthetic import fit

    # noise-free chunks: BPE then gives each conditioning's chunk a fixed token sequence
    task = ChunkTask(bimodal=False, num_conditions=4, horizon=8, action_dim=3, noise_std=0.0)
    _, chunks, _, _ = task.sample(256, torch.Generator().manual_seed(0))
    tok = get_registry("tokenizer").create("fast", scale=20.0, vocab_size=256).fit(chunks.numpy())
    torch.manual_seed(0)
    head = create_action_head(
        "fast", action_dim=3, horizon=8, cond_dim=16, tokenizer=tok, hidden_dim=64, depth=1, num_heads=4, max_tokens=24
    )
    assert head.config.tokenizer == "fast" and head.tokenizer.vocab_size == tok.vocab_size
    losses = fit(head, task, steps=120, batch_size=32, lr=3e-3)
    assert sum(losses[-10:]) / 10 < 0.25 * sum(losses[:5]) / 5
    pred = head.predict(task.conds)
    assert float((pred - task.modes[:, 0]).pow(2).mean()) < 0.1 * float(task.modes.var())
    config = json.loads(json.dumps(head.get_config()))  # JSON-able, tokenizer state included
    rebuilt = type(head).from_config(config)
    rebuilt.load_state_dict(head.state_dict())
    torch.testing.assert_close(rebuilt.eval().predict(task.conds), pred)


def test_unfitted_fast_tokenizer_error_says_what_to_pass():
    with pytest.raises(ConfigError, match="needs a fitted tokenizer: pass tokenizer="):
        create_action_head("fast", action_dim=2, horizon=4, cond_dim=8)
