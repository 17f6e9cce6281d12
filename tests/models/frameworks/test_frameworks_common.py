"""Every registered framework, with the built-in tiny VLM: the API contract of the seeds.

forward → finite loss with gradients on every trainable parameter (and none on frozen ones);
predict_action → [B, H, A]; save → load reproduces predict_action exactly; a small fixed batch is
overfitted (loss down by >= 90%). "Fixed batch" includes the batch's random draws (diffusion noise
and step, flow time, CVAE latent): with fresh draws every step, a flow-matching loss keeps a floor
near t → 0 that no amount of memorising removes.
"""

import pytest
import torch

from librobot.models import create_vla, list_vlas
from librobot.models.frameworks.base import AbstractVLA

from .conftest import ACTION_DIM, BATCH, HORIZON, STATE_DIM, make_batch, tiny_vlm

FRAMEWORKS = list_vlas()
OVERFIT = {"steps": 200, "lr": 3e-3}


def build(name):
    return create_vla(name, vlm=tiny_vlm(), action_dim=ACTION_DIM, state_dim=STATE_DIM, horizon=HORIZON)


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_forward_gives_finite_loss_and_gradients_reach_exactly_the_trainable_parameters(name, batch):
    vla = build(name)
    out = vla(batch["images"], batch["text"], batch["proprioception"], batch["actions"])
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    missing = [n for n, p in vla.named_parameters() if p.requires_grad and p.grad is None]
    frozen_with_grad = [n for n, p in vla.named_parameters() if not p.requires_grad and p.grad is not None]
    assert not missing, f"{name}: trainable parameters without gradient: {missing[:8]}"
    assert not frozen_with_grad
    assert vla.get_num_parameters(trainable_only=True) <= vla.get_num_parameters()


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_predict_shape_and_single_step_actions_of_the_seed_example(name, batch):
    vla = build(name)
    chunk = vla.predict_action(batch["images"], batch["text"], batch["proprioception"])
    assert chunk.shape == (BATCH, HORIZON, ACTION_DIM) and torch.isfinite(chunk).all()
    # the seeds pass one step [B, A]: a chunk of one, the rest padded out of the loss
    out = vla(batch["images"], batch["text"], batch["proprioception"], batch["actions"][:, 0])
    assert torch.isfinite(out["loss"])
    # the batch-contract dict form gives the same loss as the positional form
    torch.manual_seed(3)
    positional = vla(batch["images"], batch["text"], batch["proprioception"], batch["actions"])["loss"]
    torch.manual_seed(3)
    as_dict = vla(
        {
            "observation.images.front": batch["images"].unsqueeze(1),
            "observation.state": batch["proprioception"].unsqueeze(1),
            "task": batch["text"],
            "action": batch["actions"],
            "action_is_pad": torch.zeros(BATCH, HORIZON, dtype=torch.bool),
        }
    )["loss"]
    torch.testing.assert_close(positional, as_dict)


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_save_load_round_trip_reproduces_predictions(name, batch, tmp_path):
    vla = build(name)
    with torch.no_grad():  # non-trivial weights and statistics, so the round trip has something to lose
        for p in vla.parameters():
            p.add_(0.01 * torch.randn_like(p))
    stats = {
        "format": "librobot-normalizer",
        "features": {
            "action": {"mode": "min_max", "clamp": False, "center": [0.5] * ACTION_DIM, "scale": [2.0] * ACTION_DIM},
            "observation.state": {
                "mode": "mean_std",
                "clamp": False,
                "center": [0.1] * STATE_DIM,
                "scale": [3.0] * STATE_DIM,
            },
        },
    }
    vla.set_normalization(stats)
    expected = vla.predict_action(batch["images"], batch["text"], batch["proprioception"])
    vla.save_pretrained(tmp_path / "policy")
    loaded = AbstractVLA.from_pretrained(tmp_path / "policy")
    assert type(loaded) is type(vla)
    got = loaded.predict_action(batch["images"], batch["text"], batch["proprioception"])
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_overfits_a_small_fixed_batch(name):
    torch.manual_seed(0)
    vla = build(name)
    vla.unfreeze_backbone()
    data = make_batch(seed=1)
    params = [p for p in vla.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=OVERFIT["lr"], weight_decay=0.0)

    def loss_on_fixed_draws():
        torch.manual_seed(123)  # the same noise / flow times / latents at every step
        return vla(data["images"], data["text"], data["proprioception"], data["actions"])["loss"]

    with torch.no_grad():
        before = float(loss_on_fixed_draws())
    for _ in range(OVERFIT["steps"]):
        loss = loss_on_fixed_draws()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(loss_on_fixed_draws())
    assert after <= 0.1 * before, f"{name}: loss {before:.4f} → {after:.4f}, less than a 90% drop"
