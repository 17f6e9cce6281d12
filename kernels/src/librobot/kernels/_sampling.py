"""Public sampling steps: fold each schedule into the coefficients of one fused elementwise pass
and let the dispatcher pick a backend. Semantics are ``librobot.kernels.reference.sampling``'s.

Every step takes ``backend=`` and ``out=`` (a preallocated array like ``x``; it may be ``x``
itself: the kernels read each element before writing it). ``edm_euler_step`` takes ``out=`` as
a pair ``(x_next, slope)``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from librobot.core.errors import SpecError
from librobot.kernels import _arrays as A
from librobot.kernels import _native
from librobot.kernels._dispatch import _env_backend, select
from librobot.kernels.backends.cpu import _STEP_DTYPES as _STEP_CODES


class DiffusionCoef(NamedTuple):
    """See csrc/sampling.h: x0 = ax*x + ae*eps (clipped), out = k_x0*x0 + k_xt*x + k_eps*eps + k_noise*noise."""

    ax: float
    ae: float
    has_clip: bool
    clip: float
    sqrt_acp: float
    inv_sqrt_1m_acp: float
    k_x0: float
    k_xt: float
    k_eps: float
    k_noise: float


class StepCall:
    """The arrays of one step and what the dispatcher keys its cached decision on.

    Built on every step call, so it is written for speed: exact-type checks, no string work
    (``describe`` formats lazily), one pass over the arrays.
    """

    __slots__ = ("code", "device", "grad", "inputs", "key", "kind", "n", "op", "outs", "raw", "traced", "uniform")

    def __init__(self, op: str, inputs: tuple[Any, ...], outs: tuple[Any, ...] | None, raw: tuple[Any, ...]) -> None:
        x = inputs[0]
        self.op, self.inputs, self.outs, self.raw = op, inputs, outs, raw
        others = inputs[1:] + outs if outs else inputs[1:]
        tx = type(x)
        uniform = True
        grad = traced = False
        if tx is np.ndarray:
            self.kind, self.device = "numpy", "cpu"
            dt, shape = x.dtype, x.shape
            uniform = x.flags.c_contiguous
            for a in others:
                if a is None:
                    continue
                if not isinstance(a, np.ndarray):
                    raise SpecError(f"{op}: mixing numpy arrays with {type(a).__name__}; pass numpy arrays only")
                if a.dtype != dt or a.shape != shape or not a.flags.c_contiguous:
                    uniform = False
        elif A.is_torch(x):
            self.kind = "torch"
            traced = A.tracing(x)
            dt, shape, cpu = x.dtype, x.shape, x.is_cpu
            uniform = x.is_contiguous()
            grad = x.requires_grad
            for a in others:
                if a is None:
                    continue
                if type(a) is not tx and not A.is_torch(a):
                    raise SpecError(f"{op}: mixing torch tensors with {type(a).__name__}; pass torch tensors only")
                if a.dtype is not dt or a.shape != shape or not a.is_contiguous() or a.is_cpu is not cpu:
                    uniform = False
                grad = grad or a.requires_grad
            if grad:
                grad = A.torch_module().is_grad_enabled()
            if cpu:
                self.device = "cpu"
            else:
                self.device = x.device.type
                if uniform and self.device == "cuda":
                    dev = x.get_device()
                    uniform = all(a is None or a.get_device() == dev for a in others)
        else:
            A.kind(x, "x")  # raises the SpecError naming the accepted types
        if outs:
            for o in outs:
                if (
                    (type(o) is not tx and A.kind(o, "out") != self.kind)
                    or tuple(o.shape) != tuple(shape)
                    or o.dtype != dt
                ):
                    raise SpecError(f"{op}: out must be a {self.kind} array of x's shape {list(shape)} and dtype {dt}")
        self.uniform, self.grad, self.traced = uniform, grad, traced
        self.code = A.dtype_code(x)
        self.n = A.numel(x)
        self.key = (self.kind, self.code, self.device, uniform, grad, traced)

    @property
    def dtype(self) -> str:
        return A.dtype_name(self.inputs[0])

    def describe(self) -> str:
        return f"{self.kind} {self.dtype} on {self.device}, shape {list(self.inputs[0].shape)}"

    def out(self, i: int = 0) -> Any:
        if self.outs:
            return self.outs[i]
        x = self.inputs[0]
        return np.empty_like(x) if self.kind == "numpy" else A.torch_module().empty_like(x)


_TORCH: list[Any] = []  # [torch, torch.Tensor, {dtype: kernel code}] once torch is imported


def _plain_cpu(arrays: tuple[Any, ...]) -> tuple[int, int] | None:
    """(dtype code, numel) when the dispatcher would surely pick the compiled CPU kernel: plain,
    contiguous torch CPU tensors of one shape and a kernel dtype, no autograd recording, no tracing,
    no backend forced. Else None and the full dispatch runs. A step on [8, 50, 32] actions is about
    a microsecond of arithmetic, so the StepCall (~5 us of Python) would cost more than fusing saves."""
    if _native.cpu is None or _env_backend() is not None:
        return None
    if not _TORCH:
        torch = A.torch_module()
        if torch is None:
            return None
        A.dtype_code(torch.empty(0))  # fills A's dtype table
        _TORCH.extend([torch, torch.Tensor, {d: c for d, c in A._TORCH_CODES.items() if c in _STEP_CODES}])
    torch, tensor, codes = _TORCH
    x = arrays[0]
    if type(x) is not tensor:
        return None
    dt, shape = x.dtype, x.shape
    code = codes.get(dt)
    if code is None or not x.is_cpu or not x.is_contiguous():
        return None
    grad = x.requires_grad
    for a in arrays[1:]:
        if type(a) is not tensor or a.dtype is not dt or a.shape != shape or not a.is_cpu or not a.is_contiguous():
            return None
        grad = grad or a.requires_grad
    if (grad and torch.is_grad_enabled()) or torch._C._get_tracing_state() is not None:
        return None
    return code, x.numel()


def _diffusion_fast(x: Any, eps: Any, noise: Any, out: Any, coef: DiffusionCoef) -> Any:
    arrays = tuple(a for a in (x, eps, noise, out) if a is not None)
    fast = _plain_cpu(arrays)
    if fast is None:
        return None
    out = _TORCH[0].empty_like(x) if out is None else out
    noise_ptr = 0 if noise is None else noise.data_ptr()
    _native.cpu.diffusion_step(fast[0], fast[1], x.data_ptr(), eps.data_ptr(), noise_ptr, out.data_ptr(), *coef)
    return out


def _check_schedule(acp_t: float, acp_prev: float) -> None:
    if not (0.0 < acp_t < 1.0 and 0.0 < acp_prev <= 1.0 and acp_prev >= acp_t):
        raise SpecError(f"need 0 < acp_t <= acp_prev <= 1 with acp_t < 1, got acp_t={acp_t}, acp_prev={acp_prev}")


def _x0_coef(acp_t: float, clip_sample: float | None) -> tuple[float, ...]:
    s = math.sqrt(acp_t)
    clip = 0.0 if clip_sample is None else float(clip_sample)
    return 1.0 / s, -math.sqrt(1.0 - acp_t) / s, clip_sample is not None, clip, s, 1.0 / math.sqrt(1.0 - acp_t)


def ddpm_coef(acp_t: float, acp_prev: float, clip_sample: float | None) -> DiffusionCoef:
    alpha_t = acp_t / acp_prev
    beta_t = 1.0 - alpha_t
    variance = beta_t * (1.0 - acp_prev) / (1.0 - acp_t)
    return DiffusionCoef(
        *_x0_coef(acp_t, clip_sample),
        k_x0=math.sqrt(acp_prev) * beta_t / (1.0 - acp_t),
        k_xt=math.sqrt(alpha_t) * (1.0 - acp_prev) / (1.0 - acp_t),
        k_eps=0.0,
        k_noise=math.sqrt(variance) if variance > 0.0 else 0.0,
    )


def ddim_coef(acp_t: float, acp_prev: float, eta: float, clip_sample: float | None) -> DiffusionCoef:
    sigma = eta * math.sqrt((1.0 - acp_prev) / (1.0 - acp_t)) * math.sqrt(max(0.0, 1.0 - acp_t / acp_prev))
    return DiffusionCoef(
        *_x0_coef(acp_t, clip_sample),
        k_x0=math.sqrt(acp_prev),
        k_xt=0.0,
        k_eps=math.sqrt(max(0.0, 1.0 - acp_prev - sigma**2)),
        k_noise=sigma if sigma > 0.0 else 0.0,
    )


def _outs(out: Any) -> tuple[Any, ...] | None:
    return None if out is None else (out,)


def ddpm_step(
    x_t: Any,
    eps: Any,
    noise: Any,
    *,
    acp_t: float,
    acp_prev: float,
    clip_sample: float | None = None,
    backend: str | None = None,
    out: Any = None,
) -> Any:
    """One ancestral DDPM step x_t -> x_{t-1} (``noise`` may be None on the last step, acp_prev == 1)."""
    _check_schedule(acp_t, acp_prev)
    coef = ddpm_coef(acp_t, acp_prev, clip_sample)
    if coef.k_noise > 0.0 and noise is None:
        raise SpecError("ddpm_step needs noise except on the last step (acp_prev == 1)")
    used_noise = noise if coef.k_noise > 0.0 else None
    fast = _diffusion_fast(x_t, eps, used_noise, out, coef) if backend is None else None
    if fast is not None:
        return fast
    raw = ("ddpm_step", (x_t, eps, noise), dict(acp_t=acp_t, acp_prev=acp_prev, clip_sample=clip_sample))
    call = StepCall("ddpm_step", (x_t, eps, used_noise), _outs(out), raw)
    return select("ddpm_step", "sampling", call, backend).diffusion(call, coef)


def ddim_step(
    x_t: Any,
    eps: Any,
    noise: Any,
    *,
    acp_t: float,
    acp_prev: float,
    eta: float = 0.0,
    clip_sample: float | None = None,
    backend: str | None = None,
    out: Any = None,
) -> Any:
    """One DDIM step; ``eta=0`` is deterministic (``noise`` may be None), ``eta>0`` needs ``noise``."""
    _check_schedule(acp_t, acp_prev)
    coef = ddim_coef(acp_t, acp_prev, eta, clip_sample)
    if coef.k_noise > 0.0 and noise is None:
        raise SpecError("ddim_step with eta > 0 needs noise")
    used_noise = noise if coef.k_noise > 0.0 else None
    fast = _diffusion_fast(x_t, eps, used_noise, out, coef) if backend is None else None
    if fast is not None:
        return fast
    raw = ("ddim_step", (x_t, eps, noise), dict(acp_t=acp_t, acp_prev=acp_prev, eta=eta, clip_sample=clip_sample))
    call = StepCall("ddim_step", (x_t, eps, used_noise), _outs(out), raw)
    return select("ddim_step", "sampling", call, backend).diffusion(call, coef)


def euler_step(x: Any, velocity: Any, dt: float, *, backend: str | None = None, out: Any = None) -> Any:
    """Flow matching: x + dt * v."""
    fast = _plain_cpu((x, velocity) if out is None else (x, velocity, out)) if backend is None else None
    if fast is not None:
        out = _TORCH[0].empty_like(x) if out is None else out
        _native.cpu.euler_step(fast[0], fast[1], x.data_ptr(), velocity.data_ptr(), out.data_ptr(), float(dt))
        return out
    call = StepCall("euler_step", (x, velocity), _outs(out), ("euler_step", (x, velocity, dt), {}))
    return select("euler_step", "sampling", call, backend).euler(call, float(dt))


def heun_step(
    x: Any, velocity: Any, velocity_next: Any, dt: float, *, backend: str | None = None, out: Any = None
) -> Any:
    """Flow matching, second order: x + dt/2 * (v + v_next), v_next taken at the Euler predictor."""
    arrays = (x, velocity, velocity_next) if out is None else (x, velocity, velocity_next, out)
    fast = _plain_cpu(arrays) if backend is None else None
    if fast is not None:
        out = _TORCH[0].empty_like(x) if out is None else out
        ptrs = (x.data_ptr(), velocity.data_ptr(), velocity_next.data_ptr(), out.data_ptr())
        _native.cpu.heun_step(fast[0], fast[1], *ptrs, float(dt))
        return out
    raw = ("heun_step", (x, velocity, velocity_next, dt), {})
    call = StepCall("heun_step", (x, velocity, velocity_next), _outs(out), raw)
    return select("heun_step", "sampling", call, backend).heun(call, float(dt))


def edm_euler_step(
    x_hat: Any,
    denoised: Any,
    sigma_hat: float,
    sigma_next: float,
    *,
    backend: str | None = None,
    out: tuple[Any, Any] | None = None,
) -> tuple[Any, Any]:
    """EDM first stage: returns (x_hat + (sigma_next - sigma_hat) * slope, slope)."""
    if sigma_hat <= 0.0:
        raise SpecError(f"sigma_hat must be > 0, got {sigma_hat}")
    if out is not None and (not isinstance(out, (tuple, list)) or len(out) != 2):
        raise SpecError("edm_euler_step: out must be a pair (x_next, slope)")
    fast = _plain_cpu((x_hat, denoised) if out is None else (x_hat, denoised, *out)) if backend is None else None
    if fast is not None:
        empty_like = _TORCH[0].empty_like
        x_next, slope = (empty_like(x_hat), empty_like(x_hat)) if out is None else out
        ptrs = (x_hat.data_ptr(), denoised.data_ptr(), x_next.data_ptr(), slope.data_ptr())
        _native.cpu.edm_euler_step(fast[0], fast[1], *ptrs, float(sigma_hat), float(sigma_next))
        return x_next, slope
    raw = ("edm_euler_step", (x_hat, denoised, sigma_hat, sigma_next), {})
    call = StepCall("edm_euler_step", (x_hat, denoised), None if out is None else tuple(out), raw)
    return select("edm_euler_step", "sampling", call, backend).edm_euler(call, float(sigma_hat), float(sigma_next))


def edm_heun_step(
    x_hat: Any,
    slope: Any,
    denoised_next: Any,
    x_next: Any,
    sigma_hat: float,
    sigma_next: float,
    *,
    backend: str | None = None,
    out: Any = None,
) -> Any:
    """EDM second-order correction at sigma_next > 0; at sigma_next <= 0 the step stays first order."""
    if sigma_next <= 0.0:
        if out is None:
            return x_next
        out[...] = x_next
        return out
    arrays = (x_hat, slope, denoised_next, x_next) if out is None else (x_hat, slope, denoised_next, x_next, out)
    fast = _plain_cpu(arrays) if backend is None else None
    if fast is not None:
        out = _TORCH[0].empty_like(x_hat) if out is None else out
        ptrs = (x_hat.data_ptr(), slope.data_ptr(), denoised_next.data_ptr(), x_next.data_ptr(), out.data_ptr())
        _native.cpu.edm_heun_step(fast[0], fast[1], *ptrs, float(sigma_hat), float(sigma_next))
        return out
    raw = ("edm_heun_step", (x_hat, slope, denoised_next, x_next, sigma_hat, sigma_next), {})
    call = StepCall("edm_heun_step", (x_hat, slope, denoised_next, x_next), _outs(out), raw)
    return select("edm_heun_step", "sampling", call, backend).edm_heun(call, float(sigma_hat), float(sigma_next))
