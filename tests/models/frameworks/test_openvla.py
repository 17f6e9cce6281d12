"""OpenVLA-style (256-bin tokens written by the LM) and its OFT variant (one parallel pass, L1)."""

import torch

from librobot.models import create_vla, create_vlm
from librobot.models.frameworks.openvla.model import OpenVLAStyle
from librobot.models.frameworks.openvla.oft import OpenVLAOFT

from .conftest import STATE_DIM, make_batch, tiny_vlm

A, H = 3, 2


def build(name="openvla", vlm=None, **options):
    torch.manual_seed(0)
    vla = create_vla(name, vlm=vlm or tiny_vlm(), action_dim=A, state_dim=STATE_DIM, horizon=H, **options)
    with torch.no_grad():  # away from the symmetric start, so decoding has real choices to make
        for p in vla.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vla.eval()


def count_vlm_calls(vla):
    calls = {"forward": 0, "extend": 0, "suffix_lengths": []}

    def on_forward(module, args, kwargs):
        calls["forward"] += 1
        suffix = kwargs.get("suffix_embeds")
        calls["suffix_lengths"].append(0 if suffix is None else suffix.shape[1])

    vla.vlm.register_forward_pre_hook(on_forward, with_kwargs=True)
    extend = vla.vlm.extend

    def counting_extend(*args, **kwargs):
        calls["extend"] += 1
        return extend(*args, **kwargs)

    vla.vlm.extend = counting_extend
    return calls


def test_registered_names_and_aliases():
    assert type(create_vla("openvla_style", action_dim=A, horizon=H)) is OpenVLAStyle
    assert type(create_vla("oft", action_dim=A, horizon=H)) is OpenVLAOFT
    assert type(create_vla("openvla-oft", action_dim=A, horizon=H)) is OpenVLAOFT


def test_bins_take_the_last_non_special_vocabulary_ids_and_round_trip_within_half_a_bin():
    # a tiny VLM with 8 spare ids after its 256 bytes + 4 specials (<pad> <s> </s> <image> = 256..259)
    vla = create_vla(
        "openvla",
        vlm=create_vlm("librobot-tiny-vlm", extra_tokens=8, dim=32, depth=1, heads=2, kv_heads=1),
        action_dim=A,
        horizon=H,
    )
    ids = vla.vocab.ids.tolist()
    assert ids[:8] == list(range(267, 259, -1))  # the highest ids first: bin 0 → the last id
    assert ids[8:] == list(range(255, 7, -1)) and not set(ids) & {256, 257, 258, 259}
    # round trip: every value in [-1, 1] comes back within half a bin width = 1 / num_bins
    g = torch.Generator().manual_seed(0)
    actions = torch.rand(64, H, A, generator=g) * 2 - 1
    actions[0, 0] = torch.tensor([-1.0, 1.0, 0.0])
    bins = vla.discretize(actions)
    assert bins.shape == (64, H * A) and int(bins.min()) >= 0 and int(bins.max()) <= 255
    err = (vla.undiscretize(bins) - actions).abs().max()
    assert err <= 1 / 256 + 1e-6
    tokens, weight = vla.encode_actions(actions, torch.zeros(64, H, dtype=torch.bool))
    torch.testing.assert_close(vla.decode_tokens(tokens), vla.undiscretize(bins))
    assert bool((weight == 1).all())
    # unconstrained argmax may emit any id: a non-action id reads as the nearest action id
    assert vla.vocab.index_of(torch.tensor([267, 264, 256, 259, 0])).tolist() == [0, 3, 8, 7, 255]


def test_kv_cached_greedy_decoding_equals_recomputation_and_runs_the_prompt_once():
    vla = build("openvla")
    b = make_batch(batch=2)
    args = (b["images"][:2], b["text"][:2], b["proprioception"][:2])
    calls = count_vlm_calls(vla)
    cached = vla.generate(*args, use_cache=True)
    # one prompt pass, then one extension per token (the state token, then the tokens so far)
    assert calls["forward"] == 1 and calls["extend"] == H * A
    recomputed = vla.generate(*args, use_cache=False)
    assert calls["forward"] == 1 + H * A and calls["extend"] == H * A
    assert cached.shape == (2, H * A) and torch.equal(cached, recomputed)
    assert len(set(cached.flatten().tolist())) > 1  # real decoding, not one repeated id
    chunk = vla.predict_action(*args)
    expected = vla.normalizer.unnormalize("action", vla.decode_tokens(cached))
    torch.testing.assert_close(chunk, expected)


def test_teacher_forcing_appends_the_action_tokens_after_the_prompt():
    vla = build("openvla")
    calls = count_vlm_calls(vla)
    b = make_batch()
    out = vla(b["images"], b["text"], b["proprioception"], b["actions"][:, :H, :A])
    # state token + all H·A action tokens as suffix embeddings (the last one predicts the stop
    # token, OpenVLA's "<actions></s>" target), in one pass
    assert calls["forward"] == 1 and calls["suffix_lengths"] == [1 + H * A]
    assert torch.isfinite(out["loss"]) and 0 <= float(out["token_accuracy"]) <= 1


def test_oft_decodes_the_whole_chunk_in_one_vlm_pass():
    vla = build("openvla-oft")
    calls = count_vlm_calls(vla)
    b = make_batch()
    chunk = vla.predict_action(b["images"], b["text"], b["proprioception"])
    assert chunk.shape == (3, H, A) and torch.isfinite(chunk).all()
    assert calls == {"forward": 1, "extend": 0, "suffix_lengths": [1 + H * A]}  # state + H·A action slots
    out = vla(b["images"], b["text"], b["proprioception"], b["actions"][:, :H, :A])
    assert calls["forward"] == 2 and set(out) == {"loss", "l1"}
    # the chunk is a deterministic function of the observation
    assert torch.equal(vla.predict_action(b["images"], b["text"], b["proprioception"]), chunk)


def test_oft_per_step_slots_and_padded_steps_leave_the_l1_loss():
    vla = build("openvla-oft", action_tokens="per_step", mixer_depth=0)
    calls = count_vlm_calls(vla)
    b = make_batch()
    actions = b["actions"][:, :H, :A]
    pad = torch.tensor([[False, True]] * 3)
    base = vla(b["images"], b["text"], b["proprioception"], actions, action_is_pad=pad)["loss"]
    moved = actions.clone()
    moved[:, 1] += 5.0  # only padded steps change
    assert torch.equal(vla(b["images"], b["text"], b["proprioception"], moved, action_is_pad=pad)["loss"], base)
    assert calls["suffix_lengths"][0] == 1 + H
