"""ACT: CVAE over action chunks (L1 + β·KL, z = 0 at inference) and temporal ensembling in serve."""

import math

import numpy as np
import torch

from librobot.core.batch import OBS_STATE, image_key
from librobot.core.interfaces import PolicyInterface
from librobot.models import create_vla
from librobot.models.frameworks.act.model import ACTPolicy
from librobot.serve import FakeClock, PolicyRuntime, RuntimeConfig

from .conftest import STATE_DIM, make_batch, tiny_vlm

A, H = 3, 4
SMALL = dict(
    hidden_dim=32, num_heads=4, feedforward_dim=64, cvae_layers=1, encoder_layers=1, decoder_layers=1, latent_dim=8
)


def build(**options):
    torch.manual_seed(0)
    vla = create_vla("aloha", vlm=tiny_vlm(), action_dim=A, state_dim=STATE_DIM, horizon=H, **{**SMALL, **options})
    with torch.no_grad():
        for p in vla.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vla


def test_defaults_are_acts_and_the_loss_is_l1_plus_beta_kl():
    assert type(create_vla("act_style", action_dim=A, horizon=H)) is ACTPolicy
    c = ACTPolicy.config_class()
    assert (c.horizon, c.kl_weight, c.latent_dim, c.temporal_ensemble_coeff) == (100, 10.0, 32, 0.01)
    vla = build(dropout=0.0)
    b = make_batch()
    actions = b["actions"][:, :H, :A]
    torch.manual_seed(1)
    out = vla(b["images"], b["text"], b["proprioception"], actions)
    assert float(out["kl"]) > 0
    torch.testing.assert_close(out["loss"].detach(), out["l1"] + 10.0 * out["kl"])
    # the latent is drawn from the posterior: another draw, another loss; z = 0 at inference
    torch.manual_seed(2)
    assert not torch.equal(vla(b["images"], b["text"], b["proprioception"], actions)["loss"], out["loss"])
    vla.eval()
    inputs = vla.prepare(b["images"], b["text"], b["proprioception"])
    with torch.no_grad():
        zero = vla.decode(inputs, torch.zeros(3, 8))
    torch.testing.assert_close(vla.predict_action(b["images"], b["text"], b["proprioception"]), zero)


def test_padded_steps_leave_the_cvae_encoder_and_the_loss():
    vla = build(dropout=0.0)
    b = make_batch()
    actions = b["actions"][:, :H, :A]
    pad = torch.tensor([[False, False, True, True]] * 3)
    moved = actions.clone()
    moved[:, 2:] += 3.0
    losses = []
    for a in (actions, moved):
        torch.manual_seed(5)
        losses.append(vla(b["images"], b["text"], b["proprioception"], a, action_is_pad=pad)["loss"])
    assert torch.equal(losses[0], losses[1])


def test_vision_features_ignore_the_instruction():
    vla = build(features="vision").eval()
    b = make_batch()
    one = vla.predict_action(b["images"], ["pick"] * 3, b["proprioception"])
    other = vla.predict_action(b["images"], ["place it somewhere else"] * 3, b["proprioception"])
    assert torch.equal(one, other)
    with_text = build().eval()  # features="vlm": the instruction's tokens are in the memory
    assert not torch.allclose(
        with_text.predict_action(b["images"], ["pick"] * 3, b["proprioception"]),
        with_text.predict_action(b["images"], ["place it somewhere else"] * 3, b["proprioception"]),
    )


def test_resnet18_features_are_acts_own_backbone_and_leave_the_vlm_unread():
    vla = build(features="resnet18").eval()
    calls = []
    vla.vlm.register_forward_hook(lambda *_: calls.append(1))
    b = make_batch()
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    tokens, mask, _ = vla.observation_tokens(vla.prepare(images, b["text"], b["proprioception"]))
    assert tokens.shape == (3, 2 * 2, SMALL["hidden_dim"]) and mask.all()  # 64 px / stride 32 = 2x2 tokens
    chunk = vla.predict_action(images, b["text"], b["proprioception"])
    assert not calls, "features='resnet18' must not run the VLM"
    assert not torch.equal(chunk, vla.predict_action(images.flip(-1), b["text"], b["proprioception"]))
    assert not any(p.requires_grad for p in vla.vlm.parameters())
    assert all(p.requires_grad for p in vla.resnet.parameters())
    stage_widths = [stage[0].conv1.out_channels for stage in vla.resnet.stages]
    assert stage_widths == [64, 128, 256, 512]  # ResNet-18's layout


class TorchPolicy(PolicyInterface):
    """The ACT policy behind serve's PolicyInterface: one observation → one chunk [H, A]."""

    def __init__(self, vla):
        self.vla = vla

    @property
    def action_dim(self):
        return self.vla.action_dim

    @property
    def chunk_size(self):
        return self.vla.horizon

    def predict_chunk(self, observation, task=None):
        image = torch.as_tensor(observation[image_key("front")]).unsqueeze(0)
        state = torch.as_tensor(observation[OBS_STATE], dtype=torch.float32).unsqueeze(0)
        return self.vla.predict_action(image, [task or ""], state)[0].numpy()


class PassThrough:
    def filter(self, action, now):
        return action


def test_temporal_ensembling_in_serve_matches_a_hand_computed_weighted_average():
    vla = build().eval()
    m = vla.config.temporal_ensemble_coeff
    runtime = PolicyRuntime(
        TorchPolicy(vla),
        PassThrough(),
        RuntimeConfig(control_hz=10, mode="ensemble", ensemble_coeff=m),
        clock=FakeClock(),
        task="stack the cups",
    )
    g = torch.Generator().manual_seed(7)
    steps = 6
    observations = [
        {
            image_key("front"): torch.rand(3, 32, 32, generator=g).numpy(),
            OBS_STATE: torch.randn(STATE_DIM, generator=g).numpy(),
        }
        for _ in range(steps)
    ]
    commanded = np.stack([runtime.step(obs) for obs in observations])
    # every step's chunk, straight from the policy: chunks[s][k] is its prediction for step s + k
    chunks = [TorchPolicy(vla).predict_chunk(obs, "stack the cups").astype(np.float64) for obs in observations]
    assert not np.allclose(chunks[0], chunks[1])  # different observations, different chunks
    for t in range(steps):
        covering = [s for s in range(steps) if 0 <= t - s < H and s <= t]  # oldest first
        weights = [math.exp(-m * i) for i in range(len(covering))]
        expected = sum(w * chunks[s][t - s] for w, s in zip(weights, covering)) / sum(weights)
        np.testing.assert_allclose(commanded[t], expected, rtol=1e-6, atol=1e-7)
    assert len(covering) == H  # the last steps average H overlapping chunks
    assert not np.allclose(commanded[-1], chunks[-1][0])  # ensembling, not the latest chunk's action
    assert runtime.stats.inferences == steps
