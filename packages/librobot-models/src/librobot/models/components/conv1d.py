"""A Conv1d whose reduced-precision CPU forward is one matmul over unfolded columns.

On CPUs, torch's bf16/fp16 ``conv1d`` takes a path about 2x slower than fp32 (measured at the
U-Net's sizes, batch 1, torch 2.13), while a bf16 matmul runs on AMX/AVX512-BF16 at 2-4x fp32's
speed. The denoiser's convolutions are short in time (a chunk of 16 steps or fewer) and wide in
channels, so im2col costs little and the product reads the weight once: exactly a linear layer
on the unfolded input. fp32 (and GPUs) keep ``F.conv1d``, the reference path; a test compares
both on fresh inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv1d_as_matmul(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int) -> Tensor:
    """``F.conv1d(x, weight, bias, stride, padding)`` (groups 1, dilation 1) as im2col + linear."""
    out_channels, _, kernel = weight.shape
    batch = x.shape[0]
    cols = F.pad(x, (padding, padding)).unfold(2, kernel, stride)  # [B, C_in, L_out, k]
    length = cols.shape[2]
    cols = cols.transpose(1, 2).reshape(batch * length, -1)  # rows: (C_in, k) flattened like the weight
    out = F.linear(cols, weight.reshape(out_channels, -1), bias)
    return out.reshape(batch, length, out_channels).transpose(1, 2)


def conv_transpose1d_as_matmul(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int) -> Tensor:
    """``F.conv_transpose1d`` (groups 1, dilation 1, no output padding) as a linear map of each
    input step to its k output taps, overlap-added with ``F.fold`` (col2im)."""
    in_channels, out_channels, kernel = weight.shape
    batch, _, length = x.shape
    taps = F.linear(x.transpose(1, 2), weight.reshape(in_channels, -1).t())  # [B, L, C_out·k]
    out_length = (length - 1) * stride - 2 * padding + kernel
    out = F.fold(
        taps.transpose(1, 2), output_size=(1, out_length), kernel_size=(1, kernel), stride=(1, stride),
        padding=(0, padding),
    ).reshape(batch, out_channels, out_length)  # fmt: skip
    return out if bias is None else out + bias.to(out.dtype)[:, None]


def _matmul_path(conv: nn.Conv1d | nn.ConvTranspose1d, x: Tensor) -> bool:
    """Whether ``conv`` takes the matmul form: reduced precision on a CPU, groups 1, dilation 1,
    explicit padding (the forms the two functions above implement)."""
    reduced = conv.weight.dtype in (torch.bfloat16, torch.float16) or torch.is_autocast_enabled("cpu")
    simple = conv.groups == 1 and conv.dilation == (1,) and isinstance(conv.padding, tuple)
    return x.device.type == "cpu" and reduced and simple


class TemporalConv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters and state dict) with the matmul path for bf16/fp16 on a CPU."""

    def forward(self, x: Tensor) -> Tensor:
        if _matmul_path(self, x) and self.padding_mode == "zeros":
            return conv1d_as_matmul(x, self.weight, self.bias, self.stride[0], self.padding[0])
        return super().forward(x)


class TemporalConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` (same parameters) with the matmul path for bf16/fp16 on a CPU."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if _matmul_path(self, x) and self.output_padding == (0,) and output_size is None:
            return conv_transpose1d_as_matmul(x, self.weight, self.bias, self.stride[0], self.padding[0])
        return super().forward(x, output_size)


__all__ = ["TemporalConv1d", "TemporalConvTranspose1d", "conv1d_as_matmul", "conv_transpose1d_as_matmul"]
