"""The compiled C++/OpenMP backend (module librobot.kernels._cpu): torch CPU tensors and numpy."""

from __future__ import annotations

from typing import Any

from librobot.kernels import _arrays as A
from librobot.kernels import _native
from librobot.kernels._dispatch import Backend
from librobot.kernels.backends._native_args import TRACING, attention_args, attention_decline

_ATTN_DTYPES = (A.F32, A.F16, A.BF16)
_STEP_DTYPES = (A.F32, A.F16, A.BF16, A.F64)
ptr = A.data_ptr


def step_decline(call: Any, device: str, dtypes: tuple[int, ...]) -> str | None:
    """Reasons shared by the compiled backends for the elementwise sampling steps."""
    if call.device != device:
        want = "CPU tensors or numpy arrays" if device == "cpu" else "CUDA tensors"
        return f"device {call.device}: this backend takes {want}"
    if call.code not in dtypes:
        names = "/".join(A.CODE_NAMES[c] for c in dtypes)
        return f"dtype {call.dtype}: the compiled kernel takes {names}"
    if not call.uniform:
        return (
            "inputs differ in shape/dtype/device or are not contiguous "
            "(broadcasting and strided inputs run on the reference)"
        )
    if call.traced:
        return TRACING
    if call.grad:
        return "inputs require grad: the compiled kernels have no backward pass (the reference runs under autograd)"
    return None


class CpuBackend(Backend):
    name = "cpu"

    def __init__(self) -> None:
        self._m = _native.cpu
        self.last_tiles = -1  # (query tile, key tile) products of the last attention call (tests)

    def unavailable(self) -> str | None:
        return _native.CPU_REASON if self._m is None else None

    def declines(self, op: str, call: Any) -> str | None:
        if op.startswith("attention"):
            return attention_decline(call, "cpu", _ATTN_DTYPES)
        return step_decline(call, "cpu", _STEP_DTYPES)

    def attention(self, call: Any) -> Any:
        args, out, _keep = attention_args(call)
        # 0 threads: OpenMP's default (OMP_NUM_THREADS / set_cpu_threads)
        self.last_tiles = self._m.attention(*args, 0)
        return out

    def diffusion(self, call: Any, coef: Any) -> Any:
        x, eps, noise = call.inputs
        out = call.out()
        self._m.diffusion_step(call.code, call.n, ptr(x), ptr(eps), 0 if noise is None else ptr(noise), ptr(out), *coef)
        return out

    def euler(self, call: Any, dt: float) -> Any:
        x, v = call.inputs
        out = call.out()
        self._m.euler_step(call.code, call.n, ptr(x), ptr(v), ptr(out), dt)
        return out

    def heun(self, call: Any, dt: float) -> Any:
        x, v, vn = call.inputs
        out = call.out()
        self._m.heun_step(call.code, call.n, ptr(x), ptr(v), ptr(vn), ptr(out), dt)
        return out

    def edm_euler(self, call: Any, sigma_hat: float, sigma_next: float) -> Any:
        x, den = call.inputs
        ox, os_ = call.out(0), call.out(1)
        self._m.edm_euler_step(call.code, call.n, ptr(x), ptr(den), ptr(ox), ptr(os_), sigma_hat, sigma_next)
        return ox, os_

    def edm_heun(self, call: Any, sigma_hat: float, sigma_next: float) -> Any:
        xh, s, dn, xn = call.inputs
        out = call.out()
        self._m.edm_heun_step(call.code, call.n, ptr(xh), ptr(s), ptr(dn), ptr(xn), ptr(out), sigma_hat, sigma_next)
        return out
