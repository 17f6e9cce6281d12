"""The fused C++ sampling steps, the loops and the preallocated sampler against the float64
reference on fresh random inputs (float32/float16/bfloat16/float64; poisoned outputs; numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import librobot.kernels as K
from librobot.core.errors import SpecError
from librobot.kernels import reference as R

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
SHAPES = [(1, 50, 32), (3, 50, 32), (8, 50, 32), (2, 7, 5)]


def steps(g: torch.Generator):
    """(name, fused call(backend, tensors, out), reference call(tensors), number of inputs)."""
    acp_t, acp_prev = 0.2 + 0.3 * float(torch.rand(1, generator=g)), 0.7
    return [
        (
            "ddpm",
            lambda be, a, out: K.ddpm_step(*a, acp_t=acp_t, acp_prev=acp_prev, backend=be, out=out),
            lambda a: R.ddpm_step(*a, acp_t=acp_t, acp_prev=acp_prev),
            3,
        ),
        (
            "ddpm_clip",
            lambda be, a, out: K.ddpm_step(*a, acp_t=acp_t, acp_prev=acp_prev, clip_sample=1.0, backend=be, out=out),
            lambda a: R.ddpm_step(*a, acp_t=acp_t, acp_prev=acp_prev, clip_sample=1.0),
            3,
        ),
        (
            "ddpm_last",
            lambda be, a, out: K.ddpm_step(a[0], a[1], None, acp_t=acp_t, acp_prev=1.0, backend=be, out=out),
            lambda a: R.ddpm_step(a[0], a[1], None, acp_t=acp_t, acp_prev=1.0),
            2,
        ),
        (
            "ddim",
            lambda be, a, out: K.ddim_step(a[0], a[1], None, acp_t=acp_t, acp_prev=acp_prev, backend=be, out=out),
            lambda a: R.ddim_step(a[0], a[1], None, acp_t=acp_t, acp_prev=acp_prev),
            2,
        ),
        (
            "ddim_eta_clip",
            lambda be, a, out: K.ddim_step(
                *a, acp_t=acp_t, acp_prev=acp_prev, eta=0.7, clip_sample=0.8, backend=be, out=out
            ),
            lambda a: R.ddim_step(*a, acp_t=acp_t, acp_prev=acp_prev, eta=0.7, clip_sample=0.8),
            3,
        ),
        ("euler", lambda be, a, out: K.euler_step(*a, -0.1, backend=be, out=out), lambda a: R.euler_step(*a, -0.1), 2),
        ("heun", lambda be, a, out: K.heun_step(*a, -0.25, backend=be, out=out), lambda a: R.heun_step(*a, -0.25), 3),
        (
            "edm_heun",
            lambda be, a, out: K.edm_heun_step(*a, 2.5, 1.2, backend=be, out=out),
            lambda a: R.edm_heun_step(*a, 2.5, 1.2),
            4,
        ),
    ]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_steps_match_float64_reference(shape, cpu_isa, seed, close):
    g = torch.Generator().manual_seed(seed)
    for dname, dtype in DTYPES.items():
        for name, fused, ref, n_in in steps(g):
            a = [torch.randn(*shape, generator=g).to(dtype) for _ in range(n_in)]
            out = torch.full(shape, float("nan"), dtype=dtype)
            got = fused("cpu", a, out)
            assert got is out
            # values reach ~1/sqrt(acp) * |x| ~ 10: bounds scale with them
            msg = f"seed={seed} {cpu_isa} {name} {dname} {shape}"
            close(got, ref([t.double() for t in a]), dname, msg, scale=4.0)
        x, den = (torch.randn(*shape, generator=g).to(dtype) for _ in range(2))
        outs = (torch.full(shape, float("nan"), dtype=dtype), torch.full(shape, float("nan"), dtype=dtype))
        x_next, slope = K.edm_euler_step(x, den, 3.0, 1.5, backend="cpu", out=outs)
        want_next, want_slope = R.edm_euler_step(x.double(), den.double(), 3.0, 1.5)
        close(x_next, want_next, dname, f"seed={seed} edm_euler x {dname}", scale=4.0)
        close(slope, want_slope, dname, f"seed={seed} edm_euler slope {dname}", scale=4.0)


def test_in_place_update_equals_out_of_place(seed):
    g = torch.Generator().manual_seed(seed)
    x, eps, z = (torch.randn(4, 50, 32, generator=g) for _ in range(3))
    expected = K.ddim_step(x, eps, z, acp_t=0.4, acp_prev=0.8, eta=0.5, backend="cpu")
    y = x.clone()
    assert K.ddim_step(y, eps, z, acp_t=0.4, acp_prev=0.8, eta=0.5, backend="cpu", out=y) is y
    torch.testing.assert_close(y, expected, rtol=0, atol=0)


def test_numpy_steps(seed):
    rng = np.random.default_rng(seed)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5), (np.float16, 4e-3)):
        x, v, vn = (rng.standard_normal((3, 50, 32)).astype(dtype) for _ in range(3))
        got = K.heun_step(x, v, vn, -0.1)
        assert isinstance(got, np.ndarray) and got.dtype == dtype
        want = R.heun_step(*(torch.from_numpy(a).double() for a in (x, v, vn)), -0.1).numpy()
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol, err_msg=f"seed={seed}")
        got = K.ddpm_step(x, v, vn, acp_t=0.3, acp_prev=0.6)
        want = R.ddpm_step(*(torch.from_numpy(a).double() for a in (x, v, vn)), acp_t=0.3, acp_prev=0.6).numpy()
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=4 * tol, err_msg=f"seed={seed}")


def test_broadcast_inputs_fall_back_to_the_reference():
    x, v = torch.randn(2, 50, 32), torch.randn(1, 50, 32)
    torch.testing.assert_close(K.euler_step(x, v, 0.1), x + 0.1 * v)
    with pytest.raises(K.NoBackendError, match="differ in shape"):
        K.euler_step(x, v, 0.1, backend="cpu")


def test_the_direct_cpu_path_equals_the_dispatched_cpu_backend_and_steps_aside(seed, monkeypatch):
    """Plain CPU tensors skip the dispatcher's bookkeeping: same bits as backend='cpu'; autograd,
    a forced backend and mismatched shapes still take the full dispatch."""
    g = torch.Generator().manual_seed(seed)
    x, e, z, w = (torch.randn(3, 50, 32, generator=g) for _ in range(4))
    acp = dict(acp_t=0.35, acp_prev=0.6)
    pairs = [
        (lambda **k: K.euler_step(x, e, -0.1, **k)),
        (lambda **k: K.heun_step(x, e, z, -0.1, **k)),
        (lambda **k: K.edm_euler_step(x, e, 2.0, 1.0, **k)[0]),
        (lambda **k: K.edm_heun_step(x, e, z, w, 2.0, 1.0, **k)),
        (lambda **k: K.ddpm_step(x, e, z, **acp, **k)),
        (lambda **k: K.ddim_step(x, e, z, **acp, eta=0.5, **k)),
    ]
    for i, step in enumerate(pairs):
        assert torch.equal(step(), step(backend="cpu")), i
    out = torch.full_like(x, float("nan"))
    assert K.euler_step(x, e, -0.1, out=out) is out and torch.equal(out, K.euler_step(x, e, -0.1, backend="cpu"))
    leaf = x.clone().requires_grad_()
    K.euler_step(leaf, e, -0.1).sum().backward()  # the reference runs under autograd
    torch.testing.assert_close(leaf.grad, torch.ones_like(x))
    with pytest.raises(SpecError, match="out must be"):
        K.euler_step(x, e, -0.1, out=torch.empty(3, 50, 31))
    monkeypatch.setenv(K.ENV_BACKEND, "cuda")
    with pytest.raises(K.NoBackendError, match="forced by the environment variable"):
        K.euler_step(x, e, -0.1)


# ----------------------------------------------------------------------------------- loops
def field(y, t, *cond):  # a smooth velocity field with a known flow
    return -y * (1.0 + 0.5 * t)


def test_flow_loops_match_reference_loops(seed):
    x = torch.randn(4, 50, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    times = torch.linspace(1.0, 0.0, 11).tolist()
    for method in ("euler", "heun"):
        want = R.flow_sample(field, x, times, method=method)
        torch.testing.assert_close(K.flow_sample(field, x, times, method=method, backend="cpu"), want)
        got32 = K.flow_sample(field, x.float(), times, method=method, backend="cpu")
        torch.testing.assert_close(got32.double(), want, rtol=1e-5, atol=1e-5)


def eps_model(y, t, *cond):
    return torch.tanh(y) * (0.5 + 0.01 * t) if isinstance(y, torch.Tensor) else np.tanh(y) * (0.5 + 0.01 * t)


def test_stochastic_loops_draw_the_same_noise_as_the_reference(seed):
    acp = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 100, dtype=torch.float64), 0).tolist()
    x = torch.randn(2, 50, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    gen = lambda: torch.Generator().manual_seed(seed + 1)  # noqa: E731
    want = R.ddpm_sample(eps_model, x, acp, clip_sample=1.0, generator=gen())
    torch.testing.assert_close(K.ddpm_sample(eps_model, x, acp, clip_sample=1.0, generator=gen(), backend="cpu"), want)
    ts = list(range(99, -1, -10))
    want = R.ddim_sample(eps_model, x, acp, ts, eta=0.5, generator=gen())
    torch.testing.assert_close(K.ddim_sample(eps_model, x, acp, ts, eta=0.5, generator=gen(), backend="cpu"), want)
    target = torch.randn(2, 50, 32, dtype=torch.float64)
    den = lambda y, s, *c: target + (y - target) * (s / (1 + s))  # noqa: E731
    sig = [20.0, 5.0, 1.0, 0.3, 0.0]
    want = R.edm_sample(den, x * 20, sig, churn=2.0, generator=gen())
    torch.testing.assert_close(K.edm_sample(den, x * 20, sig, churn=2.0, generator=gen(), backend="cpu"), want)


# ----------------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("method", ["euler", "heun", "ddim", "ddpm", "edm"])
def test_preallocated_sampler_matches_the_loops(method, seed):
    acp = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 50, dtype=torch.float64), 0).tolist()
    times = torch.linspace(1.0, 0.0, 11).tolist()
    sig = [20.0, 5.0, 1.0, 0.3, 0.0]
    cond = torch.randn(1, 50, 32, dtype=torch.float64)
    f = {
        "euler": lambda y, t, c: field(y, t) + c,
        "heun": lambda y, t, c: field(y, t) + c,
        "ddim": lambda y, t, c: eps_model(y, t) + 0.1 * c,
        "ddpm": lambda y, t, c: eps_model(y, t) + 0.1 * c,
        "edm": lambda y, s, c: c + (y - c) * (s / (1 + s)),
    }[method]
    kwargs = {
        "euler": dict(timesteps=times),
        "heun": dict(timesteps=times),
        "ddim": dict(alphas_cumprod=acp, timesteps=list(range(49, -1, -7)), eta=0.3),
        "ddpm": dict(alphas_cumprod=acp, clip_sample=1.0),
        "edm": dict(sigmas=sig, churn=1.5),
    }[method]
    x0 = torch.randn(3, 50, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    sampler = K.PreallocatedSampler(f, x0, method=method, generator=torch.Generator().manual_seed(7), **kwargs)
    got = sampler(x0, cond)
    g = torch.Generator().manual_seed(7)
    fc = lambda y, t: f(y, t, cond)  # noqa: E731
    want = {
        "euler": lambda: R.flow_sample(fc, x0, times),
        "heun": lambda: R.flow_sample(fc, x0, times, method="heun"),
        "ddim": lambda: R.ddim_sample(fc, x0, acp, kwargs["timesteps"], eta=0.3, generator=g),
        "ddpm": lambda: R.ddpm_sample(fc, x0, acp, clip_sample=1.0, generator=g),
        "edm": lambda: R.edm_sample(fc, x0, sig, churn=1.5, generator=g),
    }[method]()
    torch.testing.assert_close(got, want)
    buffers = [sampler.x.data_ptr(), sampler.aux.data_ptr(), sampler.noise.data_ptr()]
    sampler(x0, cond)  # buffers are reused, not reallocated
    assert [sampler.x.data_ptr(), sampler.aux.data_ptr(), sampler.noise.data_ptr()] == buffers


def test_numpy_sampler_matches_numpy_loop(seed):
    rng = lambda: np.random.default_rng(seed)  # noqa: E731
    acp = np.cumprod(1 - np.linspace(1e-4, 0.02, 30)).tolist()
    x0 = np.random.default_rng(seed + 1).standard_normal((2, 50, 32)).astype(np.float32)
    sampler = K.PreallocatedSampler(eps_model, x0, method="ddpm", alphas_cumprod=acp, generator=rng())
    got = sampler(x0)
    want = K.ddpm_sample(eps_model, x0, acp, generator=rng())
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # deterministic flow sampling on float64 numpy equals the torch reference loop
    x64 = x0.astype(np.float64)
    times = np.linspace(1.0, 0.0, 8).tolist()
    flow = K.PreallocatedSampler(field, x64, method="heun", timesteps=times)
    want = R.flow_sample(field, torch.from_numpy(x64), times, method="heun").numpy()
    np.testing.assert_allclose(flow(x64), want, rtol=1e-12, atol=1e-12)
