"""Reduced-precision inference: the weights of matmul layers stored in bf16/fp16 once, and the
forward pass run under autocast so activations meet them in that dtype.

Why both: autocast alone re-casts every fp32 weight on every call (for a 3B backbone that is
~18 GB of memory traffic per chunk, more than the matmuls save); weights cast alone leave
fp32 activations meeting bf16 weights. Norms, softmax, embeddings, buffers and the samplers'
integration stay fp32 (autocast's fp32 ops; embeddings and norms are not cast), which keeps the
action error small: ``benchmarks/vs_lerobot_speed.py`` and tests/models/components/test_precision.py
measure it against fp32 on fresh inputs.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from librobot.core.hardware import check_precision, resolve_precision

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_MATMUL_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def device_precision(precision: str, device: torch.device | str) -> str:
    """``precision`` resolved for ``device`` (``auto``: what that CPU/GPU runs natively)."""
    device = torch.device(device)
    gpu_bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return resolve_precision(check_precision(precision), device=device.type, gpu_bf16=gpu_bf16)


def cast_matmul_weights(model: nn.Module, dtype: torch.dtype) -> int:
    """Store the weight and bias of every linear/conv layer of ``model`` in ``dtype``, in place;
    returns how many parameters were cast."""
    count = 0
    for module in model.modules():
        if isinstance(module, _MATMUL_LAYERS):
            for param in (module.weight, module.bias):
                if param is not None and param.is_floating_point() and param.dtype != dtype:
                    param.data = param.data.to(dtype)
                    count += param.numel()
    return count


class InferencePrecision:
    """What a policy runs in: ``prepare(model)`` once, then every forward under ``autocast()``."""

    def __init__(self, precision: str = "fp32", device: torch.device | str = "cpu") -> None:
        self.requested = check_precision(precision)
        self.device = torch.device(device)
        self.name = device_precision(precision, self.device)
        self.dtype = DTYPES[self.name]

    @property
    def reduced(self) -> bool:
        return self.dtype != torch.float32

    def prepare(self, model: nn.Module) -> nn.Module:
        if self.reduced:
            cast_matmul_weights(model, self.dtype)
            # oneDNN's bf16 convolutions run channels-last without reordering (ACT's ResNet-18 at
            # 96x96: 12.6 -> 9.0 ms per frame on an AMX Xeon); fp32, the reference, stays as built
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    module.to(memory_format=torch.channels_last)
        return model

    def autocast(self) -> AbstractContextManager[object]:
        if not self.reduced:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def describe(self) -> dict[str, str]:
        return {"precision": self.name, "requested": self.requested, "device": str(self.device)}


__all__ = ["DTYPES", "InferencePrecision", "cast_matmul_weights", "device_precision"]
