"""librobot-kernels: attention and diffusion/flow sampling ops with one public API.

Models call only these names. Every op has a pure-torch reference in ``librobot.kernels.reference``
(the specification); the compiled backends (C++/OpenMP ``cpu``, ``cuda``) and ``triton`` must
match it. One dispatcher picks the fastest backend that accepts a call; ``backend=`` or the
environment variable LIBROBOT_KERNELS_BACKEND forces one. ``python -m librobot.kernels.info``
prints what was built.

Importing this package needs neither torch nor the compiled extension: without torch the C++
ops still take numpy arrays; without the extension the ops fall back to the reference (with one
warning at import).
"""

from __future__ import annotations

from librobot.kernels import _native
from librobot.kernels._attention import attention, attention_with_prefix
from librobot.kernels._dispatch import BACKENDS, ENV_BACKEND, NoBackendError
from librobot.kernels._loops import ddim_sample, ddpm_sample, edm_sample, flow_sample
from librobot.kernels._sampling import ddim_step, ddpm_step, edm_euler_step, edm_heun_step, euler_step, heun_step
from librobot.kernels.sampler import PreallocatedSampler

__version__ = "0.1.0"


def available_backends() -> dict[str, str | None]:
    """Each backend's name -> None when it can run here, else why not (inputs may still be declined)."""
    from librobot.kernels._dispatch import get_backend

    return {name: get_backend(name).unavailable() for name in BACKENDS}


def set_cpu_threads(n: int) -> None:
    """Threads used by the C++ CPU kernels (OpenMP); the default follows OMP_NUM_THREADS."""
    if _native.cpu is None:
        raise NoBackendError(f"the cpu backend is unavailable: {_native.CPU_REASON}")
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    _native.cpu.set_num_threads(int(n))


def get_cpu_threads() -> int | None:
    """Threads the C++ CPU kernels use (None when the cpu backend is unavailable)."""
    return None if _native.cpu is None else int(_native.cpu.get_num_threads())


__all__ = [
    "BACKENDS",
    "ENV_BACKEND",
    "NoBackendError",
    "PreallocatedSampler",
    "attention",
    "attention_with_prefix",
    "available_backends",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "edm_euler_step",
    "edm_heun_step",
    "edm_sample",
    "euler_step",
    "flow_sample",
    "get_cpu_threads",
    "heun_step",
    "set_cpu_threads",
]
