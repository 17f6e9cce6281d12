"""One dispatcher for every op: each backend says why it declines a call, the first in the
priority order that accepts runs it.

Priority (fastest first): CPU arrays -> cpu, reference; CUDA tensors -> attention: triton, cuda,
reference (Triton's tl.dot uses tensor cores, the CUDA kernel uses CUDA cores), sampling: cuda,
triton, reference. ``backend=`` (per call) or the environment variable LIBROBOT_KERNELS_BACKEND
forces one backend; if it declines, the error says why. Backends outside the order for a device
are still asked, so an error lists every backend's reason.
"""

from __future__ import annotations

import os
from typing import Any

from librobot.core.errors import MissingExtraError, SpecError

ENV_BACKEND = "LIBROBOT_KERNELS_BACKEND"
BACKENDS = ("reference", "cpu", "cuda", "triton")
TORCH_EXTRA = "librobot-kernels[torch]"

_ORDER = {
    ("cpu", "attention"): ("cpu", "reference", "triton", "cuda"),
    ("cpu", "sampling"): ("cpu", "reference", "triton", "cuda"),
    ("cuda", "attention"): ("triton", "cuda", "reference", "cpu"),
    ("cuda", "sampling"): ("cuda", "triton", "reference", "cpu"),
}


class NoBackendError(SpecError):
    """No backend can run a call (or the forced one cannot); the message lists every reason."""


class MissingTorch(str):
    """A decline reason meaning "install torch": turns the final error into MissingExtraError."""


class Backend:
    """Interface of a backend: ``unavailable()`` and ``declines()`` return a reason or None."""

    name = "?"

    def unavailable(self) -> str | None:
        return None

    def declines(self, op: str, call: Any) -> str | None:
        raise NotImplementedError


_instances: dict[str, Backend] = {}
_cache: dict[tuple[Any, ...], Backend] = {}


def get_backend(name: str) -> Backend:
    """The backend object called ``name`` (created on first use)."""
    if name not in BACKENDS:
        raise SpecError(f"unknown kernels backend {name!r}; choose one of {', '.join(BACKENDS)} (or 'auto')")
    be = _instances.get(name)
    if be is None:
        if name == "reference":
            from librobot.kernels.backends.reference import ReferenceBackend as cls
        elif name == "cpu":
            from librobot.kernels.backends.cpu import CpuBackend as cls
        elif name == "cuda":
            from librobot.kernels.backends.cuda import CudaBackend as cls
        else:
            from librobot.kernels.backends.triton import TritonBackend as cls
        be = _instances[name] = cls()
    return be


_ENV_DATA = getattr(os.environ, "_data", None)  # CPython's encoded mirror of os.environ
_ENV_KEY = os.environ.encodekey(ENV_BACKEND) if hasattr(os.environ, "encodekey") else None


def _env_backend() -> str | None:
    """LIBROBOT_KERNELS_BACKEND, read on every call (tests and users may change it at run time);
    through os.environ's internal dict when present, ~20x cheaper than os.environ.get."""
    if _ENV_DATA is not None and _ENV_KEY is not None:
        raw = _ENV_DATA.get(_ENV_KEY)
        return None if raw is None else os.environ.decodevalue(raw)
    return os.environ.get(ENV_BACKEND)


def requested_backend(backend: str | None) -> tuple[str, str]:
    """(name or 'auto', where the choice came from)."""
    if backend is not None:
        return backend, "backend= argument"
    env = _env_backend()
    if env:
        return env.strip(), f"environment variable {ENV_BACKEND}"
    return "auto", "default"


def reason(name: str, op: str, call: Any) -> str | None:
    be = get_backend(name)
    return be.unavailable() or be.declines(op, call)


def select(op: str, family: str, call: Any, backend: str | None) -> Backend:
    """The backend that runs ``op`` on ``call`` (family: 'attention' or 'sampling')."""
    name, source = requested_backend(backend)
    key = (op, name, call.key) if call.key is not None else None
    if key is not None:
        hit = _cache.get(key)
        if hit is not None:
            return hit
    if name != "auto":
        why = reason(name, op, call)  # raises SpecError for an unknown name
        if why is not None:
            raise NoBackendError(f"{op}: backend '{name}' (forced by the {source}) cannot run this call: {why}")
        chosen = get_backend(name)
    else:
        reasons: dict[str, str] = {}
        chosen = None
        for candidate in _ORDER[("cuda" if call.device == "cuda" else "cpu", family)]:
            why = reason(candidate, op, call)
            if why is None:
                chosen = get_backend(candidate)
                break
            reasons[candidate] = why
        if chosen is None:
            listing = "; ".join(f"{n}: {r}" for n, r in reasons.items())
            msg = f"{op}: no kernels backend can run this call ({call.describe()}). {listing}"
            if isinstance(reasons.get("reference"), MissingTorch):
                raise MissingExtraError(msg + f". Install torch with: pip install '{TORCH_EXTRA}'")
            raise NoBackendError(msg)
    if key is not None:
        _cache[key] = chosen
    return chosen


def clear_cache() -> None:
    """Forget cached decisions (tests that change backend availability call this)."""
    _cache.clear()
