"""Octo-style does what Octo does (octo-models/octo: octo_transformer.py, block_transformer.py,
action_heads.py): every window frame's readouts are trained on the chunk starting at that frame;
readouts see their own group and the observations of frames <= t, and nothing else sees them;
Octo's MLP-ResNet diffusion head on the mean-pooled readouts is an option."""

import json

import pytest
import torch

from librobot.core.checkpoint import write_manifest
from librobot.core.errors import ConfigError, SpecError
from librobot.models import create_vla
from librobot.models.components.transformer import Transformer
from librobot.models.frameworks.base import AbstractVLA
from librobot.models.frameworks.octo.attention import attention_mask, block_transformer
from librobot.models.frameworks.octo.head import MLPResNetDenoiser, MLPResNetDiffusionConfig

from .conftest import ACTION_DIM, HORIZON, STATE_DIM, tiny_vlm

T = 3


def build(**kw):
    torch.manual_seed(0)
    kw = {"n_obs_steps": T, **kw}
    return create_vla("octo", vlm=tiny_vlm(), action_dim=ACTION_DIM, state_dim=STATE_DIM, horizon=HORIZON, **kw)


def history_batch(seed=0, b=2, t=T, lead=0):
    """A batch-contract batch; ``lead`` extra actions before the latest frame (the window's actions)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "observation.images.front": torch.rand(b, t, 3, 32, 32, generator=g),
        "observation.state": torch.randn(b, t, STATE_DIM, generator=g),
        "task": ["stack the blocks", "open"][:b],
        "action": torch.randn(b, lead + HORIZON, ACTION_DIM, generator=g).clamp(-1, 1),
        "action_is_pad": torch.zeros(b, lead + HORIZON, dtype=torch.bool),
    }


def wake_head(policy):
    """The DiT head starts with a zero output layer, so no gradient reaches the readouts yet."""
    with torch.no_grad():
        for p in policy.head.parameters():
            p.add_(0.01 * torch.randn_like(p))


def spy_head(policy):
    """Record what the head is trained on (cond, actions, action_is_pad), loss still computed."""
    seen = {}
    forward = policy.head.forward

    def record(cond, actions, **kw):
        seen.update(cond=cond, actions=actions, pad=kw.get("action_is_pad"))
        return forward(cond, actions, **kw)

    policy.head.forward = record
    return seen


# ---------------------------------------------------------------------------------- (a) the loss
@pytest.mark.parametrize("all_steps", [True, False])
def test_the_loss_reaches_every_window_frames_readouts(all_steps):
    policy = build(supervise_all_steps=all_steps)
    wake_head(policy)
    captured = {}
    encode = policy.encode

    def keep(inputs):
        out = encode(inputs)
        out["readouts"].retain_grad()
        captured.update(out)
        return out

    policy.encode = keep
    policy(history_batch())["loss"].backward()
    grad = captured["readouts"].grad.abs().sum(dim=(0, 2, 3))  # per window frame
    assert grad[-1] > 0
    if all_steps:  # Octo: frames 0 and 1 have their own targets
        assert (grad[:-1] > 0).all(), grad
    else:  # the last frame alone
        assert (grad[:-1] == 0).all(), grad


def test_each_frame_is_trained_on_the_chunk_that_starts_at_it():
    policy = build()
    seen = spy_head(policy)
    # the contract: action [B, H, A] starts at the latest frame; frame T-1-k has its steps k..H-1
    batch = history_batch()
    policy(batch)
    actions = policy.normalizer.normalize("action", batch["action"])
    assert seen["cond"].shape[0] == 2 * T
    targets, pad = seen["actions"].view(2, T, HORIZON, ACTION_DIM), seen["pad"].view(2, T, HORIZON)
    for frame in range(T):
        k = T - 1 - frame
        assert pad[:, frame, :k].all() and not pad[:, frame, k:].any()
        assert torch.equal(targets[:, frame, k:], actions[:, : HORIZON - k])
    # the window's actions: action [B, T-1+H, A] from the first frame, every chunk complete
    full = history_batch(lead=T - 1)
    full["action_is_pad"][0, 0] = True  # e.g. before the episode start
    policy(full)
    actions = policy.normalizer.normalize("action", full["action"])
    targets, pad = seen["actions"].view(2, T, HORIZON, ACTION_DIM), seen["pad"].view(2, T, HORIZON)
    for frame in range(T):
        assert torch.equal(targets[:, frame], actions[:, frame : frame + HORIZON])
        assert torch.equal(pad[:, frame], full["action_is_pad"][:, frame : frame + HORIZON])
    # frames before the episode start are not supervised at all
    full["observation_is_pad"] = torch.tensor([[True, False, False], [False, False, False]])
    policy(full)
    assert seen["cond"].shape[0] == 2 * T - 1
    with pytest.raises(SpecError, match="from the window's first frame"):
        policy(history_batch(lead=T))


def test_the_window_actions_also_come_positionally_with_a_camera_mapping():
    policy = build()
    seen = spy_head(policy)
    batch = history_batch(lead=T - 1)
    images = {"front": batch["observation.images.front"]}
    policy(images, batch["task"], batch["observation.state"], batch["action"])
    actions = policy.normalizer.normalize("action", batch["action"])
    targets = seen["actions"].view(2, T, HORIZON, ACTION_DIM)
    assert torch.equal(targets[:, 0], actions[:, :HORIZON]) and not seen["pad"].any()
    with pytest.raises(SpecError, match="observation_is_pad must be bool"):
        policy({**batch, "observation_is_pad": torch.zeros(2, T)})


def test_the_lead_actions_change_the_loss_only_when_every_frame_is_supervised():
    for all_steps in (True, False):
        policy = build(supervise_all_steps=all_steps)
        wake_head(policy)
        batch = history_batch(lead=T - 1)
        other = {**batch, "action": batch["action"].clone()}
        other["action"][:, 0] += 0.5  # frame 0's first target step only
        losses = []
        for b in (batch, other):
            torch.manual_seed(1)  # same diffusion steps and noise
            with torch.no_grad():
                losses.append(policy(b)["loss"])
        assert (losses[0] != losses[1]) == all_steps


# ------------------------------------------------------------------------------ (b) the attention
def test_the_attention_mask_is_octos_table():
    # 1 task token, 2 frames of 1 observation + 2 readouts: t, o0, r0, r0, o1, r1, r1
    y, n = True, False
    expected = torch.tensor(
        [
            [y, n, n, n, n, n, n],  # task: the task
            [y, y, n, n, n, n, n],  # o0: task, o0
            [y, y, y, y, n, n, n],  # r0: task, o0, its group
            [y, y, y, y, n, n, n],
            [y, y, n, n, y, n, n],  # o1: task, o0, o1 (no readout)
            [y, y, n, n, y, y, y],  # r1: task, o0, o1, its group (not r0)
            [y, y, n, n, y, y, y],
        ]
    )
    assert torch.equal(attention_mask(1, 2, 1, 2), expected)
    none = expected.clone()
    none[2:4, 2:4] = none[5:7, 5:7] = False
    assert torch.equal(attention_mask(1, 2, 1, 2, readout_attention="none"), none)


@pytest.mark.parametrize("layout", ["group", "none"])
def test_which_inputs_reach_which_outputs_is_exactly_the_mask(layout):
    """Perturb one input token at a time: the outputs that change are those whose row of the
    (transitively closed, self-including) mask has that token; the others are bit-identical."""
    lt, steps, n_obs, r, w = 2, 3, 2, 2, 16
    torch.manual_seed(0)
    net = Transformer(w, 2, 2, mlp="gelu", norm="layernorm").double().eval()
    task, obs, ro = torch.randn(1, lt, w), torch.randn(1, steps, n_obs, w), torch.randn(1, steps, r, w)
    task, obs, ro = task.double(), obs.double(), ro.double()
    masks = torch.ones(1, lt, dtype=torch.bool), torch.ones(1, steps, n_obs, dtype=torch.bool)

    def run(task, obs, ro):
        t, o, rr = block_transformer(net, task, masks[0], obs, masks[1], ro, readout_attention=layout)
        return torch.cat([t[0], torch.cat([o[0], rr[0]], dim=1).flatten(0, 1)])  # dense layout order

    def dense(task, obs, ro):
        return torch.cat([task[0], torch.cat([obs[0], ro[0]], dim=1).flatten(0, 1)])

    reach = attention_mask(lt, steps, n_obs, r, readout_attention=layout) | torch.eye(lt + steps * (n_obs + r)).bool()
    reach = (reach.double() @ reach.double()) > 0  # two layers: through one intermediate token
    ref = run(task, obs, ro)
    x = dense(task, obs, ro)
    changed = torch.zeros_like(reach)
    for j in range(x.shape[0]):
        bumped = x.clone()
        bumped[j] += torch.randn(w, dtype=bumped.dtype)  # not a constant: LayerNorm removes those
        t2 = bumped[:lt][None]
        rest = bumped[lt:].view(steps, n_obs + r, w)
        out = run(t2, rest[None, :, :n_obs], rest[None, :, n_obs:])
        changed[:, j] = (out - ref).abs().amax(dim=1) > 0
    assert torch.equal(changed, reach)
    assert torch.equal(reach, attention_mask(lt, steps, n_obs, r, readout_attention=layout) | torch.eye(len(x)).bool())


def _encode(policy, batch):
    with torch.no_grad():
        return policy.encode(policy.prepare(batch))


def test_readouts_see_their_group_and_are_seen_by_nobody():
    policy = build(num_readouts=2).eval()
    batch = history_batch()
    ref = _encode(policy, batch)
    # a readout token's input changes no observation or task output
    with torch.no_grad():
        policy.readouts[0] += torch.randn_like(policy.readouts[0])
    out = _encode(policy, batch)
    assert torch.equal(out["task"], ref["task"]) and torch.equal(out["obs"], ref["obs"])
    # ... and reaches the other readout of its frame: readouts of one frame see each other
    assert (out["readouts"][:, :, 1] - ref["readouts"][:, :, 1]).abs().amax(dim=(0, 2)).min() > 1e-4
    # an observation of frame 1 reaches readouts of frames 1 and 2, never frame 0
    later = {**batch, "observation.state": batch["observation.state"].clone()}
    later["observation.state"][:, 1] += 1.0
    moved = (_encode(policy, later)["readouts"] - out["readouts"]).abs().amax(dim=(0, 2, 3))
    assert moved[0] == 0 and (moved[1:] > 1e-4).all()


def test_without_group_attention_a_readout_does_not_see_its_neighbour():
    """The check above fails on the layout without group attention (readouts see no readout)."""
    policy = build(num_readouts=2, readout_attention="none").eval()
    batch = history_batch()
    ref = _encode(policy, batch)
    with torch.no_grad():
        policy.readouts[0] += torch.randn_like(policy.readouts[0])
    assert torch.equal(_encode(policy, batch)["readouts"][:, :, 1], ref["readouts"][:, :, 1])


def test_the_legacy_layout_is_the_old_single_pass():
    """readout_attention="none" computes what this framework computed before (one pass with the
    readouts in block T + 1): folders saved then get their old outputs back with it."""
    policy = build(num_readouts=2, readout_attention="none").double().eval()
    inputs = policy.prepare(history_batch())
    inputs.views = [v.double() for v in inputs.views]
    inputs.state = inputs.state.double()
    with torch.no_grad():
        new = policy.encode(inputs)["readouts"]
        task, task_mask = policy.task_tokens(inputs)
        obs, obs_mask = policy.observation_tokens(inputs)
        b, steps, n_obs, w = obs.shape
        r, lt = 2, task.shape[1]
        readouts = (policy.readouts + policy.time_pos[:, None]).expand(b, -1, -1, -1)
        x = torch.cat([task, torch.cat([obs, readouts], dim=2).flatten(1, 2)], dim=1)
        t_ids = torch.arange(1, steps + 1)[:, None]
        q = torch.cat([torch.zeros(lt, dtype=torch.long), t_ids.expand(steps, n_obs + r).flatten()])
        kv_frames = torch.cat([t_ids.expand(steps, n_obs), torch.full((steps, r), steps + 1)], dim=1)
        kv = torch.cat([torch.zeros(lt, dtype=torch.long), kv_frames.flatten()])
        keep = torch.cat([obs_mask, torch.ones(b, steps, r, dtype=torch.bool)], dim=2)
        h = policy.transformer(x, q_blocks=q, kv_blocks=kv, key_padding_mask=torch.cat([task_mask, keep.flatten(1)], 1))
        old = h[:, lt:].view(b, steps, n_obs + r, w)[:, :, n_obs:]
    torch.testing.assert_close(new, old, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- (c) Octo's head
def test_octos_mlp_resnet_head_trains_and_predicts():
    policy = build(n_obs_steps=2, head_type="mlp_resnet", cameras=[])  # state only: fast on the CPU
    head = policy.head
    assert isinstance(head.denoiser, MLPResNetDenoiser)
    assert (head.config.sampler, head.config.num_train_timesteps, head.config.hidden_dim) == ("ddpm", 20, 256)
    g = torch.Generator().manual_seed(0)
    batch = {
        "observation.state": torch.randn(8, 2, STATE_DIM, generator=g),
        "task": ["stack the blocks"] * 8,
        "action": torch.randn(8, HORIZON, ACTION_DIM, generator=g).clamp(-1, 1),
    }

    def eval_loss():  # the same diffusion steps and noise every time: a measurement, not a sample
        torch.manual_seed(123)
        with torch.no_grad():
            return sum(policy(batch)["loss"].item() for _ in range(4)) / 4

    before = eval_loss()
    opt = torch.optim.Adam(policy.parameters(), lr=5e-4)
    torch.manual_seed(0)
    for _ in range(50):
        loss = policy(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)  # measured: 1.04 -> 0.47..0.50 over seeds 0-2
    chunk = policy.predict_action(batch)
    assert chunk.shape == (8, HORIZON, ACTION_DIM) and torch.isfinite(chunk).all()


def test_the_mlp_resnet_head_reads_only_the_mean_of_the_readouts():
    policy = build(head_type="mlp_resnet", num_readouts=2)
    readouts = torch.randn(3, 2, policy.config.hidden_dim)
    swapped = readouts.flip(1)  # same mean, different tokens
    same = readouts.mean(1, keepdim=True).expand(-1, 2, -1)
    noise = torch.randn(3, HORIZON, ACTION_DIM)
    outs = [
        policy.head.predict(c, noise=noise, generator=torch.Generator().manual_seed(0))
        for c in (readouts, swapped, same)
    ]
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[2])


def test_dit_options_are_refused_by_the_mlp_resnet_head():
    with pytest.raises(ConfigError, match="depth is an option of the DiT"):
        MLPResNetDiffusionConfig(depth=6)
    with pytest.raises(ConfigError, match="readout_attention"):
        build(readout_attention="all")


# ------------------------------------------------------------------------------- (d) save / load
def test_save_and_reload_with_the_new_options_is_identical(tmp_path):
    policy = build(head_type="mlp_resnet", num_readouts=2, readout_attention="group", supervise_all_steps=True)
    batch = history_batch()
    policy(batch)["loss"].backward()  # a trained-looking state is not needed, the weights are random
    policy.save_pretrained(tmp_path / "p")
    loaded = AbstractVLA.from_pretrained(tmp_path / "p")
    assert loaded.config.to_dict() == policy.config.to_dict()
    for name, tensor in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert torch.equal(loaded.predict_action(batch), policy.predict_action(batch))
    torch.manual_seed(3)
    a = policy(batch)["loss"]
    torch.manual_seed(3)
    assert torch.equal(loaded(batch)["loss"], a)


def test_a_folder_saved_before_these_options_still_loads(tmp_path):
    policy = build()
    policy.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in ("readout_attention", "supervise_all_steps"):
        del config["config"][key]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    write_manifest(tmp_path / "old")
    loaded = AbstractVLA.from_pretrained(tmp_path / "old")
    assert loaded.config.readout_attention == "group" and loaded.config.supervise_all_steps
    assert torch.equal(loaded.predict_action(history_batch()), policy.predict_action(history_batch()))
