"""Reduced-precision inference against the fp32 reference on fresh random inputs.

The reference is fp32, not float64: the frameworks build fp32 tensors inside (image
normalisation, position tables), and fp32's own error (~1e-6) is four orders under the bf16 bound.

Every framework runs its bf16 path (matmul weights stored in bf16, forward under autocast) and
its chunk stays within a relative error that fits bf16's 8-bit mantissa; the token decoders
(OpenVLA, RT-2) pick the same action tokens for most steps (a flip needs two logits within
bf16 rounding of each other, which random weights make common)."""

import copy

import pytest
import torch
from torch import nn

from librobot.models import create_vla
from librobot.models.components.precision import InferencePrecision, cast_matmul_weights

from ..frameworks.conftest import ACTION_DIM, HORIZON, STATE_DIM, make_batch, tiny_vlm

CONTINUOUS = ["act", "custom", "groot", "helix", "octo", "openvla-oft", "pi0", "robovlms"]
TOKENS = ["openvla", "rt2"]
NOISE = {"custom", "groot", "helix", "octo", "pi0"}  # samplers that take an initial draw
BF16_RELATIVE = 3e-2  # bf16 keeps ~3 significant digits; a few layers of rounding stay under 3%


def build(name: str) -> nn.Module:
    vla = create_vla(name, vlm=tiny_vlm(), action_dim=ACTION_DIM, state_dim=STATE_DIM, horizon=HORIZON).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():  # zero-initialised output layers would make every chunk zero: give them values
        for param in vla.parameters():
            if param.is_floating_point() and not param.any():
                param.copy_(torch.randn(param.shape, generator=g) * 0.05)
    return vla


def predict(vla: nn.Module, name: str, batch: dict, precision: InferencePrecision | None) -> torch.Tensor:
    kwargs = {}
    if name in NOISE:
        kwargs["noise"] = torch.randn(3, HORIZON, ACTION_DIM, generator=torch.Generator().manual_seed(1))
    if name == "act":
        kwargs["noise"] = torch.randn(3, vla.config.latent_dim, generator=torch.Generator().manual_seed(1))
    images, state = batch["images"], batch["proprioception"]
    with torch.no_grad(), precision.autocast() if precision else torch.autocast("cpu", enabled=False):
        return vla.predict_action(images, batch["text"], state, **kwargs)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_bf16_chunks_stay_within_bf16_error_of_the_fp32_reference(name):
    reference_model = build(name)
    fast_model = copy.deepcopy(reference_model)
    precision = InferencePrecision("bf16")
    precision.prepare(fast_model)
    for seed in (0, 1):
        batch = make_batch(seed)
        reference = predict(reference_model, name, batch, None)
        fast = predict(fast_model, name, batch, precision).double()
        assert fast.shape == reference.shape == (3, HORIZON, ACTION_DIM)
        assert reference.abs().max() > 1e-2, "the reference chunk must not be trivial"
        relative = (fast - reference).norm() / reference.norm()
        assert relative < BF16_RELATIVE, f"{name}: bf16 relative error {relative:.4f}"
        assert relative > 0, f"{name}: the bf16 path ran in fp32 (nothing was cast)"


@pytest.mark.parametrize("name", TOKENS)
def test_bf16_token_decoders_mostly_pick_the_reference_tokens(name):
    reference_model = build(name)
    fast_model = copy.deepcopy(reference_model)
    precision = InferencePrecision("bf16")
    precision.prepare(fast_model)
    batch = make_batch(2)
    reference = predict(reference_model, name, batch, None)
    fast = predict(fast_model, name, batch, precision).double()
    same = (fast - reference).abs().amax(-1) < 1e-6
    assert same.float().mean() >= 0.75, f"{name}: only {same.float().mean():.0%} of steps decoded alike"


def test_cast_matmul_weights_leaves_norms_embeddings_and_buffers_in_fp32():
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.LayerNorm(4), nn.Conv1d(4, 4, 3))
    model.register_buffer("scale", torch.ones(3))
    cast = cast_matmul_weights(model, torch.bfloat16)
    assert cast == 4 * 4 + 4 + 4 * 4 * 3 + 4
    assert model[1].weight.dtype == model[3].bias.dtype == torch.bfloat16
    assert model[0].weight.dtype == model[2].weight.dtype == model.scale.dtype == torch.float32


def test_fp32_is_untouched_and_auto_resolves_from_the_cpu(monkeypatch):
    import librobot.core.hardware as hw

    model = nn.Linear(3, 3)
    InferencePrecision("fp32").prepare(model)
    assert model.weight.dtype == torch.float32
    monkeypatch.setattr(hw, "cpu_info", lambda: hw.parse_cpuinfo("flags\t: avx2 fma avx512f amx_bf16\n"))
    assert InferencePrecision("auto").name == "bf16"
    monkeypatch.setattr(hw, "cpu_info", lambda: hw.parse_cpuinfo("flags\t: avx2 fma\n"))
    assert InferencePrecision("auto").name == "fp32"


def test_reduced_precision_puts_image_convolutions_in_channels_last():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv1d(8, 8, 3))
    InferencePrecision("bf16").prepare(model)
    assert model[0].weight.dtype == torch.bfloat16
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not model[0].weight.is_contiguous()  # really reordered, not a trivially-contiguous shape
    x = torch.rand(1, 3, 12, 12)
    with InferencePrecision("bf16").autocast():
        assert model[0](x).shape == (1, 8, 10, 10)
