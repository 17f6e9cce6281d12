"""Fused sampling updates in Triton (float32 math; same formulas as csrc/cpu_sampling.cpp)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def diffusion_kernel(
    X,
    E,
    Z,
    Out,
    n,
    ax,
    ae,
    clip,
    sqrt_acp,
    inv_sqrt_1m,
    k_x0,
    k_xt,
    k_eps,
    k_noise,
    CLIP: tl.constexpr,
    NOISE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    xt = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
    e = tl.load(E + offs, mask=m, other=0.0).to(tl.float32)
    x0 = ax * xt + ae * e
    if CLIP:
        x0 = tl.minimum(tl.maximum(x0, -clip), clip)
        e = (xt - sqrt_acp * x0) * inv_sqrt_1m
    r = k_x0 * x0 + k_xt * xt + k_eps * e
    if NOISE:
        r += k_noise * tl.load(Z + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(Out + offs, r.to(Out.dtype.element_ty), mask=m)


@triton.jit
def euler_kernel(X, V, Out, n, dt, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
    v = tl.load(V + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(Out + offs, (x + dt * v).to(Out.dtype.element_ty), mask=m)


@triton.jit
def heun_kernel(X, V, VN, Out, n, half_dt, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
    v = tl.load(V + offs, mask=m, other=0.0).to(tl.float32)
    vn = tl.load(VN + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(Out + offs, (x + half_dt * (v + vn)).to(Out.dtype.element_ty), mask=m)


@triton.jit
def edm_euler_kernel(X, DEN, OX, OS, n, inv_sigma_hat, h, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
    den = tl.load(DEN + offs, mask=m, other=0.0).to(tl.float32)
    slope = (x - den) * inv_sigma_hat
    tl.store(OS + offs, slope.to(OS.dtype.element_ty), mask=m)
    tl.store(OX + offs, (x + h * slope).to(OX.dtype.element_ty), mask=m)


@triton.jit
def edm_heun_kernel(XH, S, DN, XN, Out, n, inv_sigma_next, half_h, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    xh = tl.load(XH + offs, mask=m, other=0.0).to(tl.float32)
    s = tl.load(S + offs, mask=m, other=0.0).to(tl.float32)
    dn = tl.load(DN + offs, mask=m, other=0.0).to(tl.float32)
    xn = tl.load(XN + offs, mask=m, other=0.0).to(tl.float32)
    slope_next = (xn - dn) * inv_sigma_next
    tl.store(Out + offs, (xh + half_h * (s + slope_next)).to(Out.dtype.element_ty), mask=m)
