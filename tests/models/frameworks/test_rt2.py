"""RT-2-style: actions as reserved vocabulary ids, constrained KV-cached decoding, detokenisation."""

import numpy as np
import torch

from librobot.core.registry import get_registry
from librobot.models import create_vla, create_vlm
from librobot.models.frameworks.base import AbstractVLA
from librobot.models.frameworks.rt2.model import RT2Style

from .conftest import STATE_DIM, make_batch, tiny_vlm

A, H = 3, 2


def build(vlm=None, **options):
    torch.manual_seed(0)
    vla = create_vla(
        "rt-2",
        vlm=vlm or tiny_vlm(),
        action_dim=options.pop("action_dim", A),
        state_dim=STATE_DIM,
        horizon=options.pop("horizon", H),
        **options,
    )
    with torch.no_grad():
        for p in vla.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vla.eval()


def observation(batch=2):
    b = make_batch(batch=batch)
    return b["images"], b["text"], b["proprioception"]


def smooth_chunks(n, horizon, dim, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[None, :, None]
    return 0.8 * np.sin(2 * np.pi * (t * rng.uniform(0.2, 1.0, (n, 1, dim)) + rng.uniform(0, 1, (n, 1, dim))))


def test_reserved_ids_extend_the_vocabulary_and_survive_save_load(tmp_path):
    vlm = tiny_vlm()
    before = vlm.embed.weight.detach().clone()
    assert type(create_vla("rt2_style", action_dim=A, horizon=H)) is RT2Style
    vla = create_vla("rt2", vlm=vlm, action_dim=A, state_dim=STATE_DIM, horizon=H)
    # 256 new rows after the tiny VLM's 256 bytes + 4 specials; the old rows are untouched
    assert vla.config.reserved_start == 260 and vla.vlm.embed.num_embeddings == 260 + 256
    assert vla.vlm.cfg.extra_tokens == 256 and torch.equal(vla.vlm.embed.weight[:260], before)
    assert vla.vocab.ids.tolist() == list(range(260, 516))
    vla.save_pretrained(tmp_path / "p")
    loaded = AbstractVLA.from_pretrained(tmp_path / "p")
    assert loaded.config.reserved_start == 260 and loaded.vlm.embed.num_embeddings == 516  # not grown again


def test_transformers_backbone_grows_embeddings_and_lm_head(tmp_path):
    torch.manual_seed(0)
    vlm = create_vlm("paligemma-tiny")
    size = vlm.hf.get_input_embeddings().num_embeddings
    vla = create_vla("rt2", vlm=vlm, action_dim=A, state_dim=STATE_DIM, horizon=H, num_bins=16)
    assert vla.config.reserved_start == size
    assert (
        vla.vlm.hf.get_input_embeddings().num_embeddings == size + 16 and vla.vlm.lm_head.weight.shape[0] == size + 16
    )
    images, text, state = observation()
    expected = vla.predict_action(images, text, state)
    vla.save_pretrained(tmp_path / "p")
    loaded = AbstractVLA.from_pretrained(tmp_path / "p")
    assert loaded.vlm.hf.get_input_embeddings().num_embeddings == size + 16
    assert torch.equal(loaded.predict_action(images, text, state), expected)


def test_constrained_decoding_never_emits_non_action_ids_and_cache_equals_recomputation():
    vla = build()
    with torch.no_grad():  # make ordinary tokens win the unconstrained argmax
        vla.vlm.embed.weight[:260] *= 30.0
    obs = observation()
    ids, raw = vla.generate_ids(vla.prepare(*obs), use_cache=True)
    start = vla.config.reserved_start
    assert ids.shape == (2, H * A) and bool(((ids >= start) & (ids < start + 256)).all())
    assert bool((raw.argmax(-1) < start).any())  # unconstrained, some step would have left the action ids
    assert torch.equal(vla.generate(*obs, use_cache=False), ids)
    assert len(set(ids.flatten().tolist())) > 1


def test_uniform_detokenisation_inverts_within_half_a_bin():
    vla = build()
    g = torch.Generator().manual_seed(1)
    actions = torch.rand(32, H, A, generator=g) * 2 - 1
    ids, weight = vla.encode_actions(actions, torch.zeros(32, H, dtype=torch.bool))
    assert bool(((ids >= 260) & (ids < 516)).all()) and bool((weight == 1).all())
    assert (vla.decode_tokens(ids) - actions).abs().max() <= 1 / 256 + 1e-6


def test_fast_tokens_with_end_token_train_decode_and_round_trip(tmp_path):
    horizon, dim = 4, 2
    chunks = smooth_chunks(200, horizon, dim)
    fast = get_registry("tokenizer").create("fast", scale=10.0, vocab_size=64).fit(chunks)
    vla = build(tokenizer=fast, horizon=horizon, action_dim=dim)
    width = fast.vocab_size
    assert vla.config.tokenizer == "fast" and vla.eos_id == 260 + width and vla.vocab.num_tokens == width + 1
    # detokenisation: within FAST's own error bound for chunks inside the training range
    actions = torch.tensor(chunks[:8], dtype=torch.float32)
    ids, weight = vla.encode_actions(actions, torch.zeros(8, horizon, dtype=torch.bool))
    assert ids.shape == (8, horizon * dim + 1) and bool(((ids >= 260) & (ids <= vla.eos_id)).all())
    lengths = weight.sum(1).long()
    assert all(int(ids[i, lengths[i] - 1]) == vla.eos_id for i in range(8))  # each sequence ends with the end token
    err = (vla.decode_tokens(ids) - actions).abs().max()
    assert err <= fast.error_bound(horizon) + 1e-6
    # a training step, then constrained decoding with the cache (stops at the end token)
    images, text, state = observation()
    vla.train()
    out = vla(images, text, state, actions[:2])
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and vla.vlm.embed.weight.grad[260:].abs().sum() > 0
    vla.eval()
    generated = vla.generate(images, text, state)
    assert bool(((generated >= 260) & (generated <= vla.eos_id)).all())
    assert torch.equal(vla.generate(images, text, state, use_cache=False), generated)
    chunk = vla.predict_action(images, text, state)
    assert chunk.shape == (2, horizon, dim) and torch.isfinite(chunk).all()
    # the fitted tokenizer travels in the config: a saved policy decodes identically
    vla.save_pretrained(tmp_path / "p")
    assert torch.equal(AbstractVLA.from_pretrained(tmp_path / "p").predict_action(images, text, state), chunk)
