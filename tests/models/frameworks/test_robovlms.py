"""RoboVLMs-style: per-frame VLM features over an observation history, history fusion, FC/LSTM/GPT
decoders, continuous and discrete action spaces."""

import pytest
import torch

from librobot.core.errors import SpecError
from librobot.models import create_vla
from librobot.models.frameworks.robovlms.model import RoboVLMsPolicy

from .conftest import STATE_DIM, tiny_vlm

A, H, T = 3, 2, 3
SMALL = dict(history_dim=32, num_bins=16, head={"hidden_dim": 32})


def build(**options):
    torch.manual_seed(0)
    return create_vla(
        "robovlms_style", vlm=tiny_vlm(), action_dim=A, state_dim=STATE_DIM, horizon=H, **{**SMALL, **options}
    )


def history_batch(steps=T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "observation.images.front": torch.rand(2, steps, 3, 32, 32, generator=g),
        "observation.state": torch.randn(2, steps, STATE_DIM, generator=g),
        "task": ["open the drawer", "push the button"],
        "action": (torch.rand(2, H, A, generator=g) * 2 - 1),
        "action_is_pad": torch.zeros(2, H, dtype=torch.bool),
    }


def test_history_of_frames_through_the_batch_dict():
    vla = build(n_obs_steps=T, history="transformer", decoder="gpt")
    assert type(vla) is RoboVLMsPolicy
    frames_seen = []
    vla.vlm.register_forward_pre_hook(lambda m, args, kwargs: frames_seen.append(args[0][0].shape[0]), with_kwargs=True)
    batch = history_batch()
    out = vla(batch)
    assert torch.isfinite(out["loss"]) and frames_seen == [2 * T]  # every frame of every sample, one batched pass
    out["loss"].backward()
    assert vla.act_token.grad is not None and vla.act_token.grad.abs().sum() > 0
    # the prediction depends on the oldest frame: the history is used, not just the latest step
    vla.eval()
    first = vla.predict_action(batch)
    older = dict(batch)
    older["observation.images.front"] = batch["observation.images.front"].clone()
    older["observation.images.front"][:, 0] = 1.0 - older["observation.images.front"][:, 0]
    assert not torch.allclose(vla.predict_action(older), first)
    # only the latest n_obs_steps frames are read; fewer (an episode's first step) are fine
    longer = history_batch(steps=T + 2)
    longer["observation.images.front"][:, 2:] = batch["observation.images.front"]
    longer["observation.state"][:, 2:] = batch["observation.state"]
    torch.testing.assert_close(vla.predict_action(longer), first)
    assert vla.predict_action(history_batch(steps=1)).shape == (2, H, A)


@pytest.mark.parametrize(
    "decoder,history",
    [("fc", "lstm"), ("lstm", "none"), ("gpt", "transformer")],
)
@pytest.mark.parametrize("space", ["continuous", "discrete"])
def test_every_decoder_and_action_space_trains_a_step(decoder, history, space):
    vla = build(
        decoder=decoder,
        history=history,
        action_space=space,
        n_obs_steps=2,
        step_feature="pooled" if history == "none" else "act_token",
    )
    batch = history_batch(steps=2)
    optimizer = torch.optim.SGD([p for p in vla.parameters() if p.requires_grad], lr=1e-3)  # small: a descent step
    before = vla(batch)
    optimizer.zero_grad()
    before["loss"].backward()
    optimizer.step()
    with torch.no_grad():
        after = vla(batch)
    assert torch.isfinite(before["loss"]) and float(after["loss"]) < float(before["loss"].detach())
    assert ("ce" in before) == (space == "discrete") and ("pose_mse" in before) == (space == "continuous")
    chunk = vla.predict_action(batch)
    assert chunk.shape == (2, H, A) and torch.isfinite(chunk).all()
    if space == "discrete":  # bin centres of 16 bins over [-1, 1]
        k = (chunk + 1) * 16 / 2 - 0.5
        torch.testing.assert_close(k, k.round(), atol=1e-5, rtol=0)


def test_gripper_coordinates_use_bce_and_predict_open_or_closed():
    vla = build(gripper_dims=[-1], decoder="fc")
    batch = history_batch(steps=1)
    batch["action"][..., -1] = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    out = vla(batch)
    assert set(out) == {"loss", "pose_mse", "gripper_bce"}
    torch.testing.assert_close(out["loss"].detach(), out["pose_mse"] + 0.1 * out["gripper_bce"])
    chunk = vla.predict_action(batch)
    assert set(chunk[..., -1].flatten().tolist()) <= {-1.0, 1.0}


def test_unequal_image_and_state_history_is_an_error():
    vla = build(n_obs_steps=T)
    batch = history_batch()
    batch["observation.state"] = batch["observation.state"][:, -1:]
    with pytest.raises(SpecError, match="same T_obs"):
        vla(batch)
