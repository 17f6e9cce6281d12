"""The matmul form of Conv1d (the reduced-precision CPU path) against F.conv1d in float64."""

import pytest
import torch
import torch.nn.functional as F

from librobot.models.components.conv1d import (
    TemporalConv1d,
    TemporalConvTranspose1d,
    conv1d_as_matmul,
    conv_transpose1d_as_matmul,
)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "length"), [(5, 1, 2, 16), (3, 2, 1, 8), (1, 1, 0, 4), (3, 2, 1, 7)]
)
def test_matmul_form_equals_conv1d(kernel, stride, padding, length):
    g = torch.Generator().manual_seed(kernel * 10 + length)
    x = torch.randn(3, 12, length, generator=g, dtype=torch.float64)
    weight = torch.randn(20, 12, kernel, generator=g, dtype=torch.float64)
    bias = torch.randn(20, generator=g, dtype=torch.float64)
    reference = F.conv1d(x, weight, bias, stride=stride, padding=padding)
    exact = conv1d_as_matmul(x, weight, bias, stride, padding)
    assert exact.shape == reference.shape
    torch.testing.assert_close(exact, reference, rtol=1e-12, atol=1e-12)
    fast = conv1d_as_matmul(x.bfloat16(), weight.bfloat16(), bias.bfloat16(), stride, padding).double()
    assert (fast - reference).norm() / reference.norm() < 1e-2  # bf16: 8-bit mantissa, K = 12·k sums


def test_the_module_takes_the_matmul_path_only_in_reduced_precision():
    torch.manual_seed(0)
    conv = TemporalConv1d(8, 6, 5, padding=2)
    x = torch.randn(2, 8, 16)
    torch.testing.assert_close(conv(x), F.conv1d(x, conv.weight, conv.bias, padding=2))  # fp32: conv1d itself
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = conv(x)
    expected = conv1d_as_matmul(x.bfloat16(), conv.weight.bfloat16(), conv.bias.bfloat16(), 1, 2)
    assert under_autocast.dtype == torch.bfloat16
    torch.testing.assert_close(under_autocast, expected)
    conv.to(torch.bfloat16)
    torch.testing.assert_close(conv(x.bfloat16()), expected)
    assert set(conv.state_dict()) == {"weight", "bias"}  # the layout of nn.Conv1d: checkpoints load as before


@pytest.mark.parametrize(("kernel", "stride", "padding", "length"), [(4, 2, 1, 8), (3, 1, 1, 5), (4, 2, 0, 3)])
def test_matmul_form_equals_conv_transpose1d(kernel, stride, padding, length):
    g = torch.Generator().manual_seed(kernel + length)
    x = torch.randn(2, 10, length, generator=g, dtype=torch.float64)
    weight = torch.randn(10, 7, kernel, generator=g, dtype=torch.float64)
    bias = torch.randn(7, generator=g, dtype=torch.float64)
    reference = F.conv_transpose1d(x, weight, bias, stride=stride, padding=padding)
    exact = conv_transpose1d_as_matmul(x, weight, bias, stride, padding)
    assert exact.shape == reference.shape
    torch.testing.assert_close(exact, reference, rtol=1e-12, atol=1e-12)
    fast = conv_transpose1d_as_matmul(x.bfloat16(), weight.bfloat16(), bias.bfloat16(), stride, padding).double()
    assert (fast - reference).norm() / reference.norm() < 1e-2
    up = TemporalConvTranspose1d(10, 7, kernel, stride=stride, padding=padding).double()
    torch.testing.assert_close(up(x), F.conv_transpose1d(x, up.weight, up.bias, stride=stride, padding=padding))
    up, x = up.float(), x.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = up(x)
    expected = conv_transpose1d_as_matmul(x.bfloat16(), up.weight.bfloat16(), up.bias.bfloat16(), stride, padding)
    assert under_autocast.dtype == torch.bfloat16
    torch.testing.assert_close(under_autocast, expected)
