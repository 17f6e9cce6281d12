"""A whole N-step sampling loop around a denoiser, with every buffer allocated once.

On CUDA the loop (denoiser calls, fused steps, noise draws) is captured as one CUDA graph on the
first call and replayed afterwards, so a 10-step flow sampler costs one graph launch instead of
dozens of kernel launches from Python. Elsewhere (CPU tensors, numpy arrays) the same loop runs
eagerly, still writing into its preallocated buffers.

Denoiser signatures follow the reference loops, plus optional conditioning arrays:
``euler``/``heun``: velocity = f(x, t, *cond); ``ddim``/``ddpm``: eps = f(x, t: int, *cond);
``edm``: denoised = f(x, sigma, *cond).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from librobot.core.errors import SpecError
from librobot.core.extras import require
from librobot.kernels import _arrays as A
from librobot.kernels._dispatch import TORCH_EXTRA
from librobot.kernels._loops import edm_gamma
from librobot.kernels._sampling import ddim_step, ddpm_step, edm_euler_step, edm_heun_step, euler_step, heun_step

METHODS = ("euler", "heun", "ddim", "ddpm", "edm")


class PreallocatedSampler:
    """Run ``sampler(x_init, *cond)`` for a fixed schedule; buffers are shaped like ``like``.

    Schedules: ``timesteps`` (floats, flow methods; ints into ``alphas_cumprod`` for ddim),
    ``alphas_cumprod`` (ddim/ddpm), ``sigmas`` (edm, descending to 0). ``cuda_graph`` defaults to
    True for CUDA tensors; graph mode draws noise from torch's default CUDA generator, so it takes
    no ``generator``, and the denoiser must be capturable (no host syncs, device-resident inputs).
    """

    def __init__(
        self,
        denoiser: Callable[..., Any],
        like: Any,
        *,
        method: str = "euler",
        timesteps: Sequence[float] | None = None,
        alphas_cumprod: Sequence[float] | None = None,
        sigmas: Sequence[float] | None = None,
        eta: float = 0.0,
        clip_sample: float | None = None,
        churn: float = 0.0,
        noise_scale: float = 1.0,
        generator: Any = None,
        backend: str | None = None,
        cuda_graph: bool | None = None,
        warmup: int = 2,
    ) -> None:
        if method not in METHODS:
            raise SpecError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.kind = A.kind(like, "like")
        self.denoiser, self.method, self.backend = denoiser, method, backend
        self.eta, self.clip_sample, self.noise_scale, self.generator = eta, clip_sample, noise_scale, generator
        self._schedule(method, timesteps, alphas_cumprod, sigmas, churn)
        self.device = A.device_type(like)
        self.cuda_graph = (self.device == "cuda") if cuda_graph is None else bool(cuda_graph)
        if self.cuda_graph and self.device != "cuda":
            raise SpecError(f"cuda_graph=True needs CUDA tensors, got {self.device}")
        if self.cuda_graph and generator is not None:
            raise SpecError(
                "cuda_graph mode draws from torch's default CUDA generator: pass generator=None "
                "(seed with torch.cuda.manual_seed) or cuda_graph=False"
            )
        self.warmup = int(warmup)
        new = lambda: A.empty(tuple(like.shape), like)  # noqa: E731
        self.x, self.aux, self.aux2, self.noise = new(), new(), new(), new()
        self.x_init = new() if self.cuda_graph else None
        self._graph: Any = None
        self._cond: list[Any] = []

    def _schedule(self, method: str, timesteps: Any, acp: Any, sigmas: Any, churn: float) -> None:
        if method in ("euler", "heun"):
            if timesteps is None or len(timesteps) < 2:
                raise SpecError(f"method {method!r} needs timesteps (at least two floats)")
            self.times = [float(t) for t in timesteps]
        elif method in ("ddim", "ddpm"):
            if acp is None:
                raise SpecError(f"method {method!r} needs alphas_cumprod")
            self.acp = [float(a) for a in acp]
            if method == "ddim":
                if timesteps is None or len(timesteps) < 1:
                    raise SpecError("method 'ddim' needs timesteps (descending ints into alphas_cumprod)")
                self.times = [int(t) for t in timesteps]
        else:
            if sigmas is None or len(sigmas) < 2:
                raise SpecError("method 'edm' needs sigmas (descending, ending at 0)")
            self.sigmas = [float(s) for s in sigmas]
            self.gamma = edm_gamma(churn, len(self.sigmas) - 1)

    # ------------------------------------------------------------------------------- the loop
    def _draw(self) -> Any:
        if self.kind == "numpy":
            rng = np.random.default_rng() if self.generator is None else self.generator
            self.noise[...] = rng.standard_normal(self.noise.shape)  # float64 draws, as the loops do
        else:
            self.noise.normal_(generator=self.generator)
        return self.noise

    def _loop(self, cond: Sequence[Any]) -> None:
        f, x, be = self.denoiser, self.x, self.backend
        if self.method in ("euler", "heun"):
            for t, t_next in zip(self.times[:-1], self.times[1:]):
                dt = t_next - t
                v = f(x, t, *cond)
                if self.method == "euler":
                    euler_step(x, v, dt, backend=be, out=x)
                else:
                    self.aux[...] = v  # the denoiser may reuse its output buffer on the next call
                    euler_step(x, self.aux, dt, backend=be, out=self.aux2)
                    heun_step(x, self.aux, f(self.aux2, t_next, *cond), dt, backend=be, out=x)
        elif self.method == "ddim":
            for i, t in enumerate(self.times):
                acp_prev = self.acp[self.times[i + 1]] if i + 1 < len(self.times) else 1.0
                noise = self._draw() if self.eta > 0 else None
                ddim_step(
                    x,
                    f(x, t, *cond),
                    noise,
                    acp_t=self.acp[t],
                    acp_prev=acp_prev,
                    eta=self.eta,
                    clip_sample=self.clip_sample,
                    backend=be,
                    out=x,
                )
        elif self.method == "ddpm":
            for t in range(len(self.acp) - 1, -1, -1):
                acp_prev = self.acp[t - 1] if t > 0 else 1.0
                noise = self._draw() if t > 0 else None
                ddpm_step(
                    x,
                    f(x, t, *cond),
                    noise,
                    acp_t=self.acp[t],
                    acp_prev=acp_prev,
                    clip_sample=self.clip_sample,
                    backend=be,
                    out=x,
                )
        else:
            self._edm_loop(cond)

    def _edm_loop(self, cond: Sequence[Any]) -> None:
        f, x, be = self.denoiser, self.x, self.backend
        x_hat, x_next, slope = self.noise, self.aux, self.aux2
        for sigma, sigma_next in zip(self.sigmas[:-1], self.sigmas[1:]):
            sigma_hat = sigma * (1.0 + self.gamma)
            if self.gamma > 0:
                c = math.sqrt(sigma_hat**2 - sigma**2) * self.noise_scale
                self._draw()
                x_hat *= c  # x_hat shares the noise buffer: x_hat = x + c * noise
                x_hat += x
            else:
                x_hat = x
            edm_euler_step(x_hat, f(x_hat, sigma_hat, *cond), sigma_hat, sigma_next, backend=be, out=(x_next, slope))
            if sigma_next > 0:
                edm_heun_step(
                    x_hat, slope, f(x_next, sigma_next, *cond), x_next, sigma_hat, sigma_next, backend=be, out=x
                )
            else:
                x[...] = x_next

    # ------------------------------------------------------------------------------- running
    def __call__(self, x_init: Any, *cond: Any, copy: bool = True) -> Any:
        """Sample from ``x_init`` (noise at the schedule's start). ``copy=False`` returns the internal
        buffer, which the next call overwrites."""
        if tuple(x_init.shape) != tuple(self.x.shape):
            raise SpecError(f"x_init has shape {list(x_init.shape)}, the sampler was built for {list(self.x.shape)}")
        if not self.cuda_graph:
            self.x[...] = x_init
            self._loop(cond)
        else:
            self._replay(x_init, cond)
        if not copy:
            return self.x
        return self.x.copy() if self.kind == "numpy" else self.x.clone()

    def _replay(self, x_init: Any, cond: Sequence[Any]) -> None:
        torch = require("torch", extra=TORCH_EXTRA, purpose="CUDA graph sampling")
        if self._graph is None:
            self._cond = [c.clone() for c in cond]
            self.x_init.copy_(x_init)
            stream = torch.cuda.Stream(device=self.x.device)
            stream.wait_stream(torch.cuda.current_stream(self.x.device))
            with torch.cuda.stream(stream):  # warm-up off the capture stream, as torch.cuda.graph requires
                for _ in range(self.warmup):
                    self.x.copy_(self.x_init)
                    self._loop(self._cond)
            torch.cuda.current_stream(self.x.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.x.copy_(self.x_init)
                self._loop(self._cond)
            self._graph = graph
        if len(cond) != len(self._cond):
            raise SpecError(f"the graph was captured with {len(self._cond)} conditioning arrays, got {len(cond)}")
        self.x_init.copy_(x_init)
        for static, c in zip(self._cond, cond):
            static.copy_(c)
        self._graph.replay()
