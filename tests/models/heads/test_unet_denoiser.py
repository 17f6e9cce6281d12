"""Diffusion Policy's 1-D U-Net denoiser (action_heads/unet1d.py): wiring, conditioning, config
checks, the heads training with it, and parity with LeRobot's ``DiffusionConditionalUnet1d`` on a
fixture LeRobot wrote (scripts/write_lerobot_unet_fixture.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from librobot.core.errors import ConfigError
from librobot.models import create_action_head
from librobot.models.action_heads.base import Conditioning
from librobot.models.action_heads.config import DenoiserConfig
from librobot.models.action_heads.denoiser import ChunkDenoiser, PreparedCond, make_denoiser
from librobot.models.action_heads.diffusion.config import DiffusionConfig
from librobot.models.action_heads.synthetic import ChunkTask, fit
from librobot.models.action_heads.unet1d import UNet1DDenoiser, lerobot_unet_keys

FIXTURE = Path(__file__).resolve().parents[2] / "artifacts" / "lerobot" / "dp_unet_tiny"
UNET = dict(denoiser="unet", unet_down_dims=(16, 32), unet_kernel_size=3, unet_groups=4, unet_step_embed_dim=16)
TASK = ChunkTask(bimodal=False, num_conditions=4, horizon=8, action_dim=3, noise_std=0.005)


def tiny_unet(**kw) -> UNet1DDenoiser:
    torch.manual_seed(0)
    config = DenoiserConfig(**{"action_dim": 3, "horizon": 8, "cond_dim": 6, **UNET, **kw})
    net = make_denoiser(config)
    assert isinstance(net, UNet1DDenoiser)
    return net.eval()


def pooled_only(pooled: torch.Tensor) -> PreparedCond:
    return PreparedCond(pooled, None, None)


def rel_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------------------ the network
def test_factory_picks_the_configured_denoiser():
    assert isinstance(make_denoiser(DenoiserConfig(action_dim=2, horizon=4, cond_dim=4, hidden_dim=16)), ChunkDenoiser)
    net = tiny_unet()
    # two down dims: two levels, one halving of the chunk, one up level
    assert len(net.down) == 2 and len(net.up) == 1 and len(net.mid) == 2
    assert isinstance(net.down[0].resample, torch.nn.Conv1d) and isinstance(net.down[1].resample, torch.nn.Identity)
    assert isinstance(net.up[0].resample, torch.nn.ConvTranspose1d)
    assert net.up[0].res1.conv1.conv.in_channels == 64  # 32 from below + 32 from the skip


def test_output_shape_varies_with_input_time_and_position():
    net = tiny_unet()
    g = torch.Generator().manual_seed(0)
    x, pooled = torch.randn(4, 8, 3, generator=g), torch.randn(4, 6, generator=g)
    t = torch.tensor([0.0, 10.0, 50.0, 99.0])
    with torch.no_grad():
        out = net(x, t, pooled_only(pooled))
        assert out.shape == (4, 8, 3) and bool(torch.isfinite(out).all())
        assert float(out.std(dim=1).min()) > 1e-3  # varies along the chunk, every sample and action dim
        assert float(out.std(dim=0).min()) > 1e-3  # and across samples
        assert rel_change(net(x + 0.5 * torch.randn(x.shape, generator=g), t, pooled_only(pooled)), out) > 0.01
        assert rel_change(net(x, t.flip(0), pooled_only(pooled)), out) > 0.01
        # a scalar t is broadcast over the batch
        torch.testing.assert_close(
            net(x, torch.tensor(7.0), pooled_only(pooled)), net(x, torch.full((4,), 7.0), pooled_only(pooled))
        )


@pytest.mark.parametrize("film_scale", [True, False])
def test_film_conditioning_changes_the_output(film_scale):
    net = tiny_unet(unet_film_scale=film_scale)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(3, 8, 3, generator=g), torch.full((3,), 20.0)
    a, b = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    with torch.no_grad():
        out_a, out_b = net(x, t, pooled_only(a)), net(x, t, pooled_only(b))
        assert rel_change(out_a, out_b) > 0.01
        # the pooled vector reaches the network only through FiLM: with every FiLM projection
        # blind to it (its columns zeroed), the conditioning no longer matters
        for m in net.modules():
            if hasattr(m, "film"):
                assert m.film.proj.weight.shape[0] == (2 if film_scale else 1) * m.conv1.conv.out_channels
                m.film.proj.weight[:, net.step_embed_dim :] = 0
        torch.testing.assert_close(net(x, t, pooled_only(a)), net(x, t, pooled_only(b)))


def test_conditioning_tokens_and_mask_are_ignored():
    net = tiny_unet()
    g = torch.Generator().manual_seed(2)
    x, pooled = torch.randn(2, 8, 3, generator=g), torch.randn(2, 6, generator=g)
    c1 = Conditioning(torch.randn(2, 5, 6, generator=g), None, pooled)
    c2 = Conditioning(torch.randn(2, 3, 6, generator=g), torch.tensor([[True, False, True]] * 2), pooled)
    with torch.no_grad():
        torch.testing.assert_close(net(x, torch.ones(2), net.prepare(c1)), net(x, torch.ones(2), net.prepare(c2)))


def test_skip_connections_carry_signal():
    net = tiny_unet()
    g = torch.Generator().manual_seed(3)
    x, pooled, t = torch.randn(3, 8, 3, generator=g), torch.randn(3, 6, generator=g), torch.full((3,), 5.0)
    with torch.no_grad():
        ref = net(x, t, pooled_only(pooled))
        res1 = net.up[0].res1
        below = res1.conv1.conv.in_channels // 2  # concat order: upsampled path first, then the skip
        for half in (slice(below, None), slice(None, below)):  # the skip half, then the path from below
            saved = res1.conv1.conv.weight.clone(), res1.residual.weight.clone()
            res1.conv1.conv.weight[:, half] = 0
            res1.residual.weight[:, half] = 0
            assert rel_change(net(x, t, pooled_only(pooled)), ref) > 0.05
            res1.conv1.conv.weight.copy_(saved[0])
            res1.residual.weight.copy_(saved[1])
        torch.testing.assert_close(net(x, t, pooled_only(pooled)), ref)


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "kw, message",
    [
        (
            dict(horizon=10, unet_down_dims=(8, 16, 32)),
            r"horizon \(10\) must be divisible by 2 \*\* \(len\(unet_down_dims\) - 1\) = 4.*use horizon 8 or 12",
        ),
        (dict(horizon=2, unet_down_dims=(8, 16, 32)), r"= 4.*use horizon 4, or fewer down dims"),
        (dict(unet_down_dims=(16, 20), unet_groups=8), r"divisible by unet_groups \(8\).*\[20\] are not"),
        (dict(unet_kernel_size=4), r"unet_kernel_size must be odd.*got 4"),
        (dict(unet_down_dims=()), r"unet_down_dims must be a non-empty sequence of positive ints"),
        (dict(unet_down_dims=(16, 0)), r"unet_down_dims must be a non-empty sequence of positive ints"),
        (dict(unet_step_embed_dim=7), r"unet_step_embed_dim must be even"),
        (dict(unet_groups=0), r"unet_groups must be a positive int"),
        (dict(denoiser="unte"), r"denoiser='unte' is not one of 'dit', 'unet' \(did you mean 'unet'\?\)"),
    ],
)
def test_config_validation_messages(kw, message):
    with pytest.raises(ConfigError, match=message):
        DiffusionConfig(**{"action_dim": 2, "horizon": 16, "cond_dim": 8, "denoiser": "unet", **kw})


def test_unet_fields_are_not_checked_for_the_dit():
    config = DiffusionConfig(action_dim=2, horizon=10, cond_dim=8, unet_kernel_size=4)  # denoiser="dit"
    assert config.denoiser == "dit"


def test_config_json_round_trip_keeps_the_tuple():
    config = DiffusionConfig(action_dim=2, horizon=8, cond_dim=8, **{**UNET, "unet_down_dims": [8, 16]})
    assert config.unet_down_dims == (8, 16)  # a list is normalised
    back = DiffusionConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config and isinstance(back.unet_down_dims, tuple)
    with pytest.raises(ConfigError, match=r"unet_down_dims \[8, 10\].*unet_groups \(4\)"):
        config.replace(unet_down_dims=[8, 10])  # replace() validates lists too
    assert config.replace(unet_film_scale=False).unet_film_scale is False


# ------------------------------------------------------------------------------------- heads
# (head, options, steps, lr, bound on prediction mse / target variance) with the U-Net of
# HEAD_UNET. Measured here with seeds 0-3: mse/var <= 0.001 (diffusion) and 0.10-0.18 (flow), about
# 3 s of CPU each; predicting the average over conditionings scores about 1. Flow matching was
# seed-sensitive with smaller U-Nets ((16, 32), or 4 groups). The diffusion head predicts the clean
# chunk, as in test_head_learning's unimodal check (ε-prediction's DDIM samples are not accurate
# this early).
HEAD_UNET = dict(UNET, unet_down_dims=(32, 64), unet_groups=8)
LEARNING = [
    ("diffusion", dict(prediction_type="sample", num_train_timesteps=50, num_inference_steps=10), 100, 5e-3, 0.02),
    ("flow_matching", dict(num_inference_steps=10), 120, 5e-3, 0.4),
]


@pytest.mark.parametrize("name, extra, steps, lr, bound", LEARNING)
def test_head_with_unet_learns_a_fixed_problem(name, extra, steps, lr, bound):
    torch.manual_seed(0)
    head = create_action_head(
        name, action_dim=TASK.action_dim, horizon=TASK.horizon, cond_dim=TASK.cond_dim, **HEAD_UNET, **extra
    )
    assert isinstance(head.denoiser, UNet1DDenoiser)
    losses = fit(head, TASK, steps=steps, batch_size=32, lr=lr)
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert last < 0.25 * first, f"{name}: loss {first:.4f} -> {last:.4f}"
    pred = head.predict(TASK.conds, generator=torch.Generator().manual_seed(1))
    assert pred.shape == (TASK.num_conditions, TASK.horizon, TASK.action_dim)
    target = TASK.modes[:, 0]
    mse, var = float((pred - target).pow(2).mean()), float(target.var())
    assert mse < bound * var, f"{name}: mse {mse:.5f} vs target variance {var:.5f}"


def test_edm_head_runs_with_the_unet():
    torch.manual_seed(0)
    head = create_action_head("edm", action_dim=2, horizon=8, cond_dim=4, num_inference_steps=4, **UNET)
    assert isinstance(head.denoiser, UNet1DDenoiser) and head.denoiser.time_scale == 250.0
    prepared = head.denoiser.prepare(head.condition(torch.randn(2, 4)))
    x = torch.randn(2, 8, 2)
    # c_skip → 1 and c_out → 0 as σ → 0, whatever F is
    torch.testing.assert_close(head._edm_denoise(x, torch.full((2,), 1e-6), prepared), x, rtol=1e-4, atol=1e-5)
    loss = head(torch.randn(2, 4), torch.rand(2, 8, 2) * 2 - 1, generator=torch.Generator().manual_seed(0))["loss"]
    loss.backward()
    assert bool(torch.isfinite(loss)) and head.denoiser.out_proj.weight.grad is not None
    assert head.predict(torch.randn(3, 4), generator=torch.Generator().manual_seed(0)).shape == (3, 8, 2)


def test_head_rebuilds_from_its_json_config():
    head = create_action_head("flow_matching", action_dim=2, horizon=8, cond_dim=4, **UNET)
    rebuilt = type(head).from_config(json.loads(json.dumps(head.get_config())))
    rebuilt.load_state_dict(head.state_dict())  # strict: same architecture
    cond, noise = torch.randn(2, 4), torch.randn(2, 8, 2)
    torch.testing.assert_close(rebuilt.predict(cond, noise=noise), head.predict(cond, noise=noise))


# ------------------------------------------------------------------------- LeRobot parity
def lerobot_cases() -> list[str]:
    return list(json.loads(FIXTURE.with_suffix(".json").read_text())["cases"])


@pytest.mark.parametrize("case", lerobot_cases())
def test_matches_lerobot_diffusion_unet(case):
    meta = json.loads(FIXTURE.with_suffix(".json").read_text())["cases"][case]
    tensors = load_file(str(FIXTURE.with_suffix(".safetensors")))
    config = DenoiserConfig(
        action_dim=meta["action_dim"],
        horizon=meta["horizon"],
        cond_dim=meta["global_cond_dim"],
        denoiser="unet",
        unet_down_dims=tuple(meta["down_dims"]),
        unet_kernel_size=meta["kernel_size"],
        unet_groups=meta["n_groups"],
        unet_step_embed_dim=meta["diffusion_step_embed_dim"],
        unet_film_scale=meta["use_film_scale_modulation"],
    )
    net = make_denoiser(config).eval()  # time_scale 1: LeRobot feeds integer DDPM steps
    state = lerobot_unet_keys(tensors, prefix=f"{case}.state.")
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(state) == len(net.state_dict())
    with torch.no_grad():
        out = net(tensors[f"{case}.x"], tensors[f"{case}.timestep"], pooled_only(tensors[f"{case}.global_cond"]))
    ref = tensors[f"{case}.out"]
    err = float((out - ref).abs().max() / ref.abs().max())
    assert err < 1e-5, f"relative error {err:.2e}"


def test_lerobot_key_mapping_names_and_errors():
    sd = {
        "diffusion.unet.diffusion_step_encoder.3.weight": torch.zeros(1),
        "diffusion.unet.up_modules.1.0.cond_encoder.1.bias": torch.zeros(1),
        "diffusion.unet.down_modules.0.0.conv2.block.1.weight": torch.zeros(1),
        "diffusion.unet.down_modules.2.2.weight": torch.zeros(1),
        "diffusion.unet.final_conv.0.block.0.weight": torch.zeros(1),
        "diffusion.rgb_encoder.backbone.weight": torch.zeros(1),  # outside the prefix: dropped
    }
    assert sorted(lerobot_unet_keys(sd, prefix="diffusion.unet.")) == [
        "down.0.res1.conv2.norm.weight",
        "down.2.resample.weight",
        "final_block.conv.weight",
        "step_mlp.2.weight",
        "up.1.res1.film.proj.bias",
    ]
    with pytest.raises(ValueError, match=r"'rgb_encoder\.weight' is not a key"):
        lerobot_unet_keys({"rgb_encoder.weight": torch.zeros(1)})
