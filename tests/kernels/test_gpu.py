"""CUDA and Triton backends on a GPU against the float64 reference, and the CUDA-graph sampler.
These skip themselves without a CUDA device (the only allowed skip)."""

from __future__ import annotations

import pytest
import torch

import librobot.kernels as K
from librobot.kernels import reference as R

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SHAPES = [(2, 8, 2, 50, 300, 64), (1, 8, 8, 306, 306, 128), (2, 4, 1, 33, 70, 256), (1, 2, 2, 5, 9, 16)]
# Triton float16/bfloat16 attention feeds P to tl.dot in the input dtype: one extra rounding
GPU_SCALE = {"cuda": 1.0, "triton": 2.0}


def backend_or_skip(name: str) -> None:
    why = K.available_backends()[name]
    if why is not None:
        pytest.skip(f"{name} backend unavailable on this GPU machine: {why}")


def mask_cases(b, lq, lk, g):
    pad = torch.rand(b, lk, generator=g, device="cuda") > 0.3
    pad[-1] = False
    return {
        "none": {},
        "causal": {"causal": True},
        "window": {"causal": True, "window": 17},
        "blocks": {
            "q_blocks": torch.randint(0, 3, (b, lq), device="cuda", generator=g),
            "kv_blocks": torch.randint(0, 3, (b, lk), device="cuda", generator=g),
        },
        "padding": {"key_padding_mask": pad},
    }


@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gpu_attention_matches_float64_reference(backend, shape, seed, close):
    backend_or_skip(backend)
    b, hq, hkv, lq, lk, d = shape
    g = torch.Generator(device="cuda").manual_seed(seed)
    for dname, dtype in DTYPES.items():
        q = torch.randn(b, hq, lq, d, generator=g, device="cuda").to(dtype)
        k, v = (torch.randn(b, hkv, lk, d, generator=g, device="cuda").to(dtype) for _ in range(2))
        for mname, kw in mask_cases(b, lq, lk, g).items():
            out = torch.full(q.shape, float("nan"), dtype=dtype, device="cuda")
            K.attention(q, k, v, backend=backend, out=out, **kw)
            want = R.attention(q.double(), k.double(), v.double(), **kw)
            close(
                out,
                want,
                dname,
                f"seed={seed} {backend} {shape} {dname} {mname}",
                scale=GPU_SCALE[backend] if dname != "float32" else 1.0,
            )


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_prefix_attention_and_steps(backend, seed, close):
    backend_or_skip(backend)
    g = torch.Generator(device="cuda").manual_seed(seed)
    t = lambda *s, dt=torch.float16: torch.randn(*s, generator=g, device="cuda").to(dt)  # noqa: E731
    q, k, v, kp, vp = t(2, 8, 50, 128), t(2, 1, 50, 128), t(2, 1, 50, 128), t(2, 1, 700, 128), t(2, 1, 700, 128)
    pad = torch.rand(2, 700, generator=g, device="cuda") > 0.1
    got = K.attention_with_prefix(q, k, v, kp, vp, prefix_padding_mask=pad, causal=True, backend=backend)
    want = R.attention_with_prefix(*(a.double() for a in (q, k, v, kp, vp)), prefix_padding_mask=pad, causal=True)
    close(got, want, "float16", f"seed={seed} {backend} prefix", scale=GPU_SCALE[backend])
    for dname, dtype in DTYPES.items():
        x, e, z = (t(8, 50, 32, dt=dtype) for _ in range(3))
        out = torch.full(x.shape, float("nan"), dtype=dtype, device="cuda")
        K.ddim_step(x, e, z, acp_t=0.3, acp_prev=0.7, eta=0.5, clip_sample=1.0, backend=backend, out=out)
        want = R.ddim_step(x.double(), e.double(), z.double(), acp_t=0.3, acp_prev=0.7, eta=0.5, clip_sample=1.0)
        close(out, want, dname, f"seed={seed} {backend} ddim {dname}", scale=4.0)
        out = K.heun_step(x, e, z, -0.1, backend=backend)
        close(out, R.heun_step(x.double(), e.double(), z.double(), -0.1), dname, f"{backend} heun {dname}", scale=4.0)


def test_kernels_follow_the_current_stream():
    backend_or_skip("cuda")
    x = torch.randn(8, 50, 32, device="cuda")
    v = torch.randn(8, 50, 32, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = K.euler_step(x, v, 0.25, backend="cuda")
    torch.cuda.current_stream().wait_stream(side)
    torch.testing.assert_close(out, x + 0.25 * v)


def test_cuda_graph_sampler_matches_eager_loop():
    torch.manual_seed(0)
    w = torch.randn(32, 32, device="cuda") / 6

    def velocity(x, t, cond):
        return torch.tanh(x @ w) * (1 + t) - cond

    x0 = torch.randn(8, 50, 32, device="cuda")
    cond = torch.randn(8, 50, 32, device="cuda")
    times = torch.linspace(1.0, 0.0, 11).tolist()
    sampler = K.PreallocatedSampler(velocity, x0, method="euler", timesteps=times)
    assert sampler.cuda_graph
    for trial in range(3):  # capture on the first call, replay on the next ones with new inputs
        xi = x0 + trial
        ci = cond * (trial + 1)
        got = sampler(xi, ci)
        want = R.flow_sample(lambda y, t, c=ci: velocity(y, t, c), xi, times)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert sampler._graph is not None
