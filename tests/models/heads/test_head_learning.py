"""Heads learn what they claim (CPU, seconds each, fixed seeds).

Unimodal task: every head drives its training loss well down and predicts the target chunk.
Bimodal task (per conditioning, one of two distinct trajectories with probability ½): the
diffusion, flow and token heads (and the hybrid) reproduce both modes, the MLP head does not.

Bound for "reproduces both modes": energy distance to held-out samples below 0.1 × that of the
mode-averaging predictor. A predictor whose samples sit on the modes with weights (p, 1 − p)
scores d/2·(2p − 1)² against the averager's d/2 (see librobot.models.action_heads.synthetic),
so 0.1 admits only 0.34 ≤ p ≤ 0.66, and blurred or off-mode samples score worse still. True
samples score ≈ 0 (checked below as the floor); collapsing to one mode scores ≈ the averager.
"""

import pytest
import torch

from librobot.models import create_action_head
from librobot.models.action_heads.synthetic import ChunkTask, energy_distance, fit, reference_distances

UNIMODAL = ChunkTask(bimodal=False, num_conditions=4, horizon=8, action_dim=3, noise_std=0.005)
GRIPPER = ChunkTask(bimodal=False, num_conditions=4, horizon=8, action_dim=3, noise_std=0.005, gripper_last=True)
BIMODAL = ChunkTask(bimodal=True, num_conditions=4, horizon=8, action_dim=2)

UNIMODAL_HEADS = [
    "mlp_oft",
    "act",
    "autoregressive",
    "fast",
    "diffusion",
    "edm",
    "flow_matching",
    "ot_cfm",
    "fc_decoder",
    "lstm_decoder",
    "gpt_decoder",
    "hybrid",
]
# The ε-parameterised diffusion head is checked on the bimodal task below; in this few-second budget
# its deterministic DDIM samples are not yet accurate (ε at low noise is learned last; measured
# mse/var ≈ 0.87 after 200 steps), so the unimodal check uses the clean-sample parameterisation.
UNIMODAL_EXTRA = {"diffusion": {"prediction_type": "sample"}}
SAMPLERS = {"diffusion": [{"sampler": "ddim"}, {"sampler": "ddpm"}]}


def make(name, task, **kw):
    torch.manual_seed(0)
    return create_action_head(name, action_dim=task.action_dim, horizon=task.horizon, cond_dim=task.cond_dim, **kw)


@pytest.mark.parametrize("name", UNIMODAL_HEADS)
def test_head_learns_unimodal_task(name, tiny, dct_tokenizer_registered):
    task = GRIPPER if name in ("fc_decoder", "lstm_decoder", "gpt_decoder") else UNIMODAL
    extra = {"tokenizer": "test-dct", "max_tokens": 24} if name == "fast" else {}
    if name == "hybrid":
        extra = {"num_bins": task.num_conditions}
    extra.update(UNIMODAL_EXTRA.get(name, {}))
    head = make(name, task, **{**tiny[name], **extra})
    losses = fit(head, task, steps=200, batch_size=32, lr=3e-3)
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert last < 0.25 * first, f"{name}: loss {first:.4f} -> {last:.4f}"
    target = task.modes[:, 0]
    for kw in SAMPLERS.get(name, [{}]):
        pred = head.predict(task.conds, generator=torch.Generator().manual_seed(1), **kw)
        if task is GRIPPER:  # pose coordinates regressed, the gripper coordinate classified to ±1
            pose_mse, pose_var = float((pred - target)[..., :2].pow(2).mean()), float(target[..., :2].var())
            assert pose_mse < 0.1 * pose_var, f"{name}: pose mse {pose_mse:.5f} vs target variance {pose_var:.5f}"
            assert float((pred[..., -1] == target[..., -1]).float().mean()) >= 0.95
        else:
            mse, var = float((pred - target).pow(2).mean()), float(target.var())
            assert mse < 0.1 * var, f"{name} {kw}: mse {mse:.5f} vs target variance {var:.5f}"


def mode_report(head, task=BIMODAL, n=200, **predict_kw):
    """Energy distances to held-out samples (averaged over conditionings) of the head's samples,
    of fresh true samples and of the mode average, and per conditioning the fraction of samples
    nearest the first mode. One predict call covers every conditioning."""
    g = torch.Generator().manual_seed(1234)
    k_all = task.num_conditions
    pred = head.predict(task.conds.repeat_interleave(n, dim=0), generator=g, **predict_kw).view(
        k_all, n, task.horizon, task.action_dim
    )
    rows = []
    for k in range(k_all):
        _, held_out, _, _ = task.sample(n, g, k)
        ref = reference_distances(task, k, n, g)
        rows.append(
            {
                "ed": energy_distance(pred[k], held_out),
                **ref,
                "first_mode": float(task.nearest_mode(pred[k], k).float().mean()),
            }
        )
    mean = {key: sum(r[key] for r in rows) / len(rows) for key in ("ed", "true", "average", "one_mode")}
    return mean, [r["first_mode"] for r in rows]


def assert_both_modes(head, label, **predict_kw):
    mean, fractions = mode_report(head, **predict_kw)
    assert abs(mean["true"]) < 0.05 * mean["average"]  # the floor: true samples are ≈ 0
    assert mean["ed"] < 0.1 * mean["average"], f"{label}: energy distance {mean}"
    assert all(0.25 <= f <= 0.75 for f in fractions), f"{label}: mode fractions {fractions}"


DIT = dict(hidden_dim=64, depth=2, num_heads=4, cross_attention=False)
# name: (config, training steps, predict variants). OT-CFM gets more steps: its Euler paths
# straighten with training, and 10 Euler steps are accurate only once they have.
BIMODAL_CASES = {
    "diffusion": (
        dict(DIT, num_train_timesteps=100, num_inference_steps=10),
        250,
        [{"sampler": "ddim"}, {"sampler": "ddpm"}],
    ),
    "edm": (dict(DIT, num_inference_steps=10), 250, [{}]),
    "flow_matching": (dict(DIT, num_inference_steps=10), 250, [{}, {"integrator": "heun"}]),
    "ot_cfm": (dict(DIT, num_inference_steps=10), 400, [{}]),
    "autoregressive": (dict(hidden_dim=64, depth=2, num_heads=4, temperature=1.0), 250, [{}]),
    "hybrid": (dict(hidden_dim=128, num_bins=8), 250, [{}]),
}


@pytest.mark.parametrize("name", list(BIMODAL_CASES))
def test_generative_heads_reproduce_both_modes(name):
    config, steps, predict_variants = BIMODAL_CASES[name]
    head = make(name, BIMODAL, **config)
    fit(head, BIMODAL, steps=steps, batch_size=64, lr=3e-3)
    for kw in predict_variants:
        assert_both_modes(head, f"{name} {kw}", **kw)


def test_mlp_head_averages_the_modes():
    for loss in ("mse", "l1"):
        head = make("mlp_oft", BIMODAL, hidden_dim=64, num_blocks=1, loss=loss)
        fit(head, BIMODAL, steps=200, batch_size=64, lr=3e-3)
        mean, _ = mode_report(head)
        # deterministic: every sample is the same chunk, far from the two-mode distribution
        assert mean["ed"] > 0.7 * mean["average"], mean
        pred = head.predict(BIMODAL.conds)
        average = BIMODAL.modes.mean(1)
        if loss == "mse":  # the conditional mean: the average of the two modes
            for k in range(BIMODAL.num_conditions):
                assert float((pred[k] - average[k]).norm()) < 0.15 * BIMODAL.mode_distance(k) / 2
