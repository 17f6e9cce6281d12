"""Helix-style: two systems at two rates (counted), end-to-end gradients, latent delay."""

import math

import pytest
import torch

from librobot.core.errors import ConfigError, SpecError
from librobot.models import create_vla
from librobot.models.frameworks.helix import HelixRunner

from .conftest import ACTION_DIM, HORIZON, STATE_DIM, make_batch, tiny_vlm


def build(**kw):
    torch.manual_seed(0)
    return create_vla("helix_style", vlm=tiny_vlm(), action_dim=ACTION_DIM, state_dim=STATE_DIM, horizon=HORIZON, **kw)


def counter(module):
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def observation(step):
    b = make_batch(seed=100 + step, batch=2)
    return b["images"], b["text"], b["proprioception"]


@pytest.mark.parametrize("n,k", [(7, 3), (6, 2), (4, 1)])
def test_runner_calls_system2_every_k_steps_and_system1_every_step(n, k):
    policy = build()
    s2, s1 = counter(policy.vlm), counter(policy.s1)
    runner = HelixRunner(policy, s2_every_k=k)
    for step in range(n):
        actions = runner.step(*observation(step))
        assert actions.shape == (2, HORIZON, ACTION_DIM)
    assert len(s2) == math.ceil(n / k) == runner.s2_calls
    assert len(s1) == n == runner.s1_calls
    runner.reset()
    runner.step(*observation(0))
    assert len(s2) == math.ceil(n / k) + 1  # a new episode starts with a fresh latent


@pytest.mark.parametrize("head_type", ["mlp_oft", "flow_matching"])
def test_k1_equals_predict_action_and_a_stale_latent_is_the_one_used(head_type):
    policy = build(head_type=head_type, head={"num_inference_steps": 3} if head_type == "flow_matching" else {})
    with torch.no_grad():  # the flow head's DiT starts at zero velocity (its output ignores the latent)
        for p in policy.head.parameters():
            p.add_(0.01 * torch.randn_like(p))
    runner = policy.runner(s2_every_k=1)
    for step in range(3):
        obs = observation(step)
        assert torch.equal(runner.step(*obs), policy.predict_action(*obs))
    slow = HelixRunner(policy, s2_every_k=2)
    slow.step(*observation(0))
    second = slow.step(*observation(1))  # S1 on observation 1, latent still from observation 0
    images, text, state = observation(1)
    expected = policy.system1(images, state, policy.system2(*observation(0)[:2]))
    assert torch.equal(second, expected)
    assert (second - policy.predict_action(images, text, state)).abs().max() > 1e-6


def test_end_to_end_gradients_reach_the_latent_queries_and_the_vlm():
    policy = build()
    b = make_batch()
    policy(b["images"], b["text"], b["proprioception"], b["actions"])["loss"].backward()
    assert policy.latent_queries.grad.abs().sum() > 0
    assert policy.vlm.embed.weight.grad.abs().sum() > 0 and policy.image_encoder.stem[0].weight.grad.abs().sum() > 0
    policy.freeze_backbone()  # frozen VLM: the queries still learn through it
    policy.zero_grad()
    policy(b["images"], b["text"], b["proprioception"], b["actions"])["loss"].backward()
    assert policy.latent_queries.grad.abs().sum() > 0 and policy.vlm.embed.weight.grad is None


def test_latent_delay_feeds_system2_older_frames_in_training_only():
    policy = build(n_obs_steps=3, latent_delay=2)
    g = torch.Generator().manual_seed(0)
    b = make_batch()
    batch = {
        "observation.images.front": torch.rand(3, 3, 3, 32, 32, generator=g),  # [B, T, C, H, W]
        "observation.state": b["proprioception"].unsqueeze(1).expand(-1, 3, -1),
        "task": b["text"],
        "action": b["actions"],
    }
    older = dict(batch)
    older["observation.images.front"] = batch["observation.images.front"].clone()
    older["observation.images.front"][:, :2] = torch.rand(3, 2, 3, 32, 32, generator=g)  # same latest frame

    def loss(frames):
        torch.manual_seed(1)
        return float(policy(frames)["loss"].detach())

    assert loss(batch) != loss(older)  # S2 read a past frame for some samples
    policy.eval()  # no delay at inference: only the latest frame matters
    assert loss(batch) == loss(older)
    policy.train()
    policy.config.latent_delay = 0
    assert loss(batch) == loss(older)
    with pytest.raises(ConfigError, match="n_obs_steps >= 3"):
        build(latent_delay=2)


def test_runner_and_latent_errors():
    policy = build()
    with pytest.raises(ConfigError, match="positive int"):
        HelixRunner(policy, s2_every_k=0)
    latent = policy.system2(*observation(0)[:2])  # a batch of 2
    three = make_batch(batch=3)
    with pytest.raises(SpecError, match="different batch"):
        policy.system1(three["images"], three["proprioception"], latent)
