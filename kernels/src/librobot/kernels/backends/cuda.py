"""The compiled CUDA backend (module librobot.kernels._cuda): CUDA torch tensors.

Kernels launch on torch's current stream of the tensors' device, so they order correctly with
torch's own work and are recorded by ``torch.cuda.graph`` capture.
"""

from __future__ import annotations

import contextlib
from typing import Any

from librobot.kernels import _arrays as A
from librobot.kernels import _native
from librobot.kernels._dispatch import Backend
from librobot.kernels.backends._native_args import attention_args, attention_decline
from librobot.kernels.backends.cpu import step_decline

_ATTN_DTYPES = (A.F32, A.F16, A.BF16)
_STEP_DTYPES = (A.F32, A.F16, A.BF16, A.F64)
MAX_HEAD_DIM = 256
ptr = A.data_ptr


class CudaBackend(Backend):
    name = "cuda"

    def __init__(self) -> None:
        self._m = _native.cuda

    def unavailable(self) -> str | None:
        return _native.CUDA_REASON if self._m is None else None

    def declines(self, op: str, call: Any) -> str | None:
        if call.kind != "torch":
            return "numpy arrays live on the host: this backend takes CUDA tensors"
        if op.startswith("attention"):
            why = attention_decline(call, "cuda", _ATTN_DTYPES)
            if why is None and call.D > MAX_HEAD_DIM:
                why = f"head dim {call.D} > {MAX_HEAD_DIM} (the kernel keeps a row's output in registers)"
            return why
        return step_decline(call, "cuda", _STEP_DTYPES)

    @staticmethod
    def _stream(x: Any) -> tuple[Any, int]:
        """(device guard, address of torch's current stream on x's device)."""
        import torch

        guard = contextlib.nullcontext()
        if x.device.index is not None and x.device.index != torch.cuda.current_device():
            guard = torch.cuda.device(x.device)
        return guard, torch.cuda.current_stream(x.device).cuda_stream

    def attention(self, call: Any) -> Any:
        args, out, _keep = attention_args(call)
        guard, stream = self._stream(call.q)
        with guard:
            self._m.attention(*args, stream)
        return out

    def diffusion(self, call: Any, coef: Any) -> Any:
        x, eps, noise = call.inputs
        out = call.out()
        guard, stream = self._stream(x)
        with guard:
            self._m.diffusion_step(
                call.code, call.n, ptr(x), ptr(eps), 0 if noise is None else ptr(noise), ptr(out), *coef, stream
            )
        return out

    def euler(self, call: Any, dt: float) -> Any:
        x, v = call.inputs
        out = call.out()
        guard, stream = self._stream(x)
        with guard:
            self._m.euler_step(call.code, call.n, ptr(x), ptr(v), ptr(out), dt, stream)
        return out

    def heun(self, call: Any, dt: float) -> Any:
        x, v, vn = call.inputs
        out = call.out()
        guard, stream = self._stream(x)
        with guard:
            self._m.heun_step(call.code, call.n, ptr(x), ptr(v), ptr(vn), ptr(out), dt, stream)
        return out

    def edm_euler(self, call: Any, sigma_hat: float, sigma_next: float) -> Any:
        x, den = call.inputs
        ox, os_ = call.out(0), call.out(1)
        guard, stream = self._stream(x)
        with guard:
            self._m.edm_euler_step(
                call.code, call.n, ptr(x), ptr(den), ptr(ox), ptr(os_), sigma_hat, sigma_next, stream
            )
        return ox, os_

    def edm_heun(self, call: Any, sigma_hat: float, sigma_next: float) -> Any:
        xh, s, dn, xn = call.inputs
        out = call.out()
        guard, stream = self._stream(xh)
        with guard:
            self._m.edm_heun_step(
                call.code, call.n, ptr(xh), ptr(s), ptr(dn), ptr(xn), ptr(out), sigma_hat, sigma_next, stream
            )
        return out
