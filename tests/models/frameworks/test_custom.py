"""Custom framework: compositions from config files and keyword arguments; close-match errors."""

from pathlib import Path

import pytest
import torch

from librobot.core.errors import ConfigError
from librobot.models import create_vla
from librobot.models.frameworks.base import AbstractVLA
from librobot.models.frameworks.custom import vla_from_config

from .conftest import ACTION_DIM, HORIZON, STATE_DIM, make_batch, tiny_vlm

CONFIGS = sorted((Path(__file__).parents[3] / "configs" / "custom").glob("*.yaml"))


def test_there_are_example_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_each_example_config_builds_and_trains_a_step(path):
    torch.manual_seed(0)
    policy = vla_from_config(path, ["horizon=4"])
    assert policy.horizon == 4
    g = torch.Generator().manual_seed(0)
    t = policy.config.n_obs_steps
    batch = {
        "observation.images.front": torch.rand(2, t, 3, 32, 32, generator=g),
        "observation.state": torch.randn(2, t, 14, generator=g),
        "task": ["pick", "place"],
        "action": torch.randn(2, 4, 7, generator=g).clamp(-1, 1),
        "action_is_pad": torch.zeros(2, 4, dtype=torch.bool),
    }
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    before = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
    loss = policy(batch)["loss"]
    optimizer.zero_grad()
    loss.backward()
    assert torch.isfinite(loss)
    assert not [n for n, p in policy.named_parameters() if p.requires_grad and p.grad is None]
    optimizer.step()
    assert all(
        not torch.equal(before[n], p) for n, p in policy.named_parameters() if n in before and p.grad.abs().sum() > 0
    )
    assert policy.predict_action(batch).shape == (2, 4, 7)


def test_keyword_composition_and_round_trip(tmp_path):
    torch.manual_seed(0)
    components = {
        "state_encoder": "mlp_state",
        "history_encoder": {"name": "transformer_history", "hidden_dim": 32, "depth": 1},
        "image_encoder": {"name": "resnet", "layers": [1, 1], "widths": [8, 16], "pool": "avg"},
        "fusion": {"name": "cross_attention", "num_queries": 2},
        "head": {"name": "ddim", "num_inference_steps": 3},
    }
    policy = create_vla(
        "custom_vla",
        vlm=tiny_vlm(),
        action_dim=ACTION_DIM,
        state_dim=STATE_DIM,
        horizon=HORIZON,
        n_obs_steps=2,
        hidden_dim=32,
        components=components,
    )
    b = make_batch()
    state = torch.stack([b["proprioception"] - 0.1, b["proprioception"]], dim=1)  # [B, 2, S] history
    out = policy(b["images"], b["text"], state, b["actions"])
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert not [n for n, p in policy.named_parameters() if p.requires_grad and p.grad is None]
    expected = policy.predict_action(b["images"], b["text"], state)
    policy.save_pretrained(tmp_path / "p")
    loaded = AbstractVLA.from_pretrained(tmp_path / "p")
    assert loaded.config.components == components
    assert torch.equal(loaded.predict_action(b["images"], b["text"], state), expected)


@pytest.mark.parametrize(
    "components,message",
    [
        ({"fusoin": "film"}, "did you mean 'fusion'"),
        ({"fusion": "flim"}, "Did you mean: film"),
        ({"head": "flow_matchin"}, "Did you mean: flow_matching"),
        ({"state_encoder": "mlp_stat"}, "Did you mean: mlp_state"),
        ({"state_encoder": {"name": "mlp_state", "output_dim": 3}}, "set by the framework"),
        ({"state_encoder": None, "fusion": "film"}, "film fusion modulates"),
        ({"head": 3}, "must be a name or"),
    ],
)
def test_bad_components_fail_with_close_matches(components, message):
    with pytest.raises(ConfigError, match=message):
        create_vla("custom", vlm=tiny_vlm(), action_dim=ACTION_DIM, state_dim=STATE_DIM, components=components)


def test_bad_config_file_keys_fail_before_building(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("framework: custom\nvlm: librobot-tiny-vlm\naction_dim: 7\nhiden_dim: 64\n")
    with pytest.raises(ConfigError, match="did you mean 'hidden_dim'"):
        vla_from_config(path)
    with pytest.raises(ConfigError, match="state_dim=0"):
        create_vla("custom", vlm=tiny_vlm(), action_dim=7, components={"history_encoder": "lstm_history"})


def _dp_style(**options):
    torch.manual_seed(0)
    components = {
        "image_encoder": {"name": "resnet", "layers": [1, 1], "widths": [8, 16], "pool": "spatial_softmax"},
        "head": {"name": "ddim", "num_inference_steps": 4},
    }
    return create_vla(
        "custom", vlm=tiny_vlm(), action_dim=ACTION_DIM, state_dim=STATE_DIM, horizon=HORIZON, n_obs_steps=2,
        hidden_dim=32, components=components, **options,
    ).eval()  # fmt: skip


def test_text_only_vlm_inputs_keep_the_cameras_for_the_image_encoder():
    policy = _dp_style(vlm_inputs="text", freeze_vlm=True)
    seen = []
    policy.vlm.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 2, 3, 32, 32, generator=g)
    state = torch.randn(3, 2, STATE_DIM, generator=g)
    noise = torch.randn(3, HORIZON, ACTION_DIM, generator=g)
    policy.predict_action({"front": images}, ["pick"] * 3, state, noise=noise)
    assert seen and all(images_arg is None for images_arg in seen), "the VLM must see the instruction only"
    calls = len(seen)
    one = policy.conditioning(policy.prepare({"front": images}, ["pick"] * 3, state))[0]
    other = policy.conditioning(policy.prepare({"front": images.flip(-1)}, ["pick"] * 3, state))[0]
    assert len(seen) == calls, "a frozen VLM on the instruction alone runs once per instruction (cached)"
    assert one.shape == other.shape and not torch.allclose(one, other), "the cameras reach the image encoder"


def test_image_history_encodes_every_frame_of_the_window():
    policy = _dp_style(image_history=True)
    g = torch.Generator().manual_seed(2)
    frames = torch.rand(3, 2, 3, 32, 32, generator=g)
    inputs = policy.prepare({"front": frames}, ["pick"] * 3, torch.randn(3, 2, STATE_DIM, generator=g))
    tokens = policy.encoder_tokens(inputs)
    assert [t.shape for t in tokens] == [(3, 1, 32), (3, 2, 32)]  # state token, one token per frame
    older = frames.clone()
    older[:, 0] = torch.rand(3, 3, 32, 32, generator=g)  # change only the older frame
    changed = policy.encoder_tokens(policy.prepare({"front": older}, ["pick"] * 3, inputs.state))[1]
    assert not torch.allclose(changed[:, 0], tokens[1][:, 0]) and torch.allclose(changed[:, 1], tokens[1][:, 1])
    with pytest.raises(ConfigError, match="image_history needs an image encoder"):
        create_vla("custom", vlm=tiny_vlm(), action_dim=ACTION_DIM, state_dim=STATE_DIM, image_history=True)
