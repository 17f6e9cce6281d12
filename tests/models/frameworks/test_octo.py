"""Octo-style: the block-wise causal structure (no token sees a later frame or any readout) and
observation history through the batch-contract form."""

import pytest
import torch

from librobot.core.errors import SpecError
from librobot.models import create_vla

from .conftest import ACTION_DIM, HORIZON, STATE_DIM, tiny_vlm

T = 3


def build(**kw):
    torch.manual_seed(0)
    return create_vla(
        "octo_style", vlm=tiny_vlm(), action_dim=ACTION_DIM, state_dim=STATE_DIM, horizon=HORIZON, n_obs_steps=T, **kw
    )


def history_batch(seed=0, b=2, t=T):
    g = torch.Generator().manual_seed(seed)
    return {
        "observation.images.front": torch.rand(b, t, 3, 32, 32, generator=g),
        "observation.images.wrist": torch.rand(b, t, 3, 32, 32, generator=g),
        "observation.state": torch.randn(b, t, STATE_DIM, generator=g),
        "task": ["stack the blocks", "open"][:b],
        "action": torch.randn(b, HORIZON, ACTION_DIM, generator=g).clamp(-1, 1),
        "action_is_pad": torch.zeros(b, HORIZON, dtype=torch.bool),
    }


def encode(policy, batch):
    with torch.no_grad():
        return policy.encode(policy.prepare(batch))


def test_later_frames_and_readouts_never_change_earlier_outputs():
    policy = build().eval()
    batch = history_batch()
    ref = encode(policy, batch)
    assert ref["obs"].shape[:3] == (2, T, 2 * 4 + 1) and ref["readouts"].shape[:3] == (2, T, 1)
    last = dict(batch)
    last["observation.images.front"] = batch["observation.images.front"].clone()
    last["observation.images.front"][:, -1] = torch.rand(2, 3, 32, 32)
    last["observation.state"] = batch["observation.state"].clone()
    last["observation.state"][:, -1] += 1.0
    out = encode(policy, last)
    assert torch.equal(out["task"], ref["task"])
    assert torch.equal(out["obs"][:, : T - 1], ref["obs"][:, : T - 1])
    assert torch.equal(out["readouts"][:, : T - 1], ref["readouts"][:, : T - 1])
    assert (out["obs"][:, -1] - ref["obs"][:, -1]).abs().max() > 1e-3
    assert (out["readouts"][:, -1] - ref["readouts"][:, -1]).abs().max() > 1e-3
    # readouts are attended by nobody: changing them changes only the readouts
    with torch.no_grad():
        policy.readouts.add_(torch.randn_like(policy.readouts))
    out = encode(policy, batch)
    assert torch.equal(out["task"], ref["task"]) and torch.equal(out["obs"], ref["obs"])
    assert (out["readouts"] - ref["readouts"]).abs().max() > 1e-3
    # the first frame still reaches the last frame's readouts: the history is used
    first = dict(batch)
    first["observation.state"] = batch["observation.state"].clone()
    first["observation.state"][:, 0] += 1.0
    assert (encode(policy, first)["readouts"][:, -1] - out["readouts"][:, -1]).abs().max() > 1e-4


def test_history_through_the_batch_dict_trains_and_predicts():
    policy = build()
    with torch.no_grad():  # the DiT head starts with a zero output layer (no gradient upstream yet)
        for p in policy.head.parameters():
            p.add_(0.01 * torch.randn_like(p))
    batch = history_batch()
    out = policy(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and policy.time_pos.grad.abs().sum() > 0
    chunk = policy.predict_action(batch)
    assert chunk.shape == (2, HORIZON, ACTION_DIM) and torch.isfinite(chunk).all()
    # a longer history is cut to the last T_obs frames
    longer = history_batch(t=T + 2)
    cut = {k: (v[:, -T:] if k.startswith("observation.") else v) for k, v in longer.items()}
    assert torch.equal(policy.predict_action(longer), policy.predict_action(cut))


def test_short_history_is_padded_and_mismatched_cameras_are_rejected():
    policy = build()
    short = history_batch(t=1)
    assert policy.predict_action(short).shape == (2, HORIZON, ACTION_DIM)
    bad = history_batch()
    bad["observation.images.wrist"] = bad["observation.images.wrist"][:, 1:]
    with pytest.raises(SpecError, match="same number of history frames"):
        policy(bad)
