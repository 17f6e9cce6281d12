"""The torch reference as a backend: runs anything torch can, numpy arrays included (converted
zero-copy through torch.from_numpy). It is the fallback when no compiled backend accepts a call."""

from __future__ import annotations

from typing import Any

import numpy as np

from librobot.core.extras import is_available
from librobot.kernels._dispatch import TORCH_EXTRA, Backend, MissingTorch

_NUMPY_OK = {"float16", "float32", "float64"}


class ReferenceBackend(Backend):
    name = "reference"

    def __init__(self) -> None:
        self._torch_ok = is_available("torch")

    def unavailable(self) -> str | None:
        if not self._torch_ok:
            return MissingTorch(f"torch is not installed (pip install '{TORCH_EXTRA}')")
        return None

    def declines(self, op: str, call: Any) -> str | None:
        if call.kind == "numpy" and call.dtype not in _NUMPY_OK:
            return f"numpy {call.dtype} arrays cannot be handed to torch (use float16/32/64)"
        return None

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _to_torch(x: Any) -> Any:
        import torch

        return torch.from_numpy(x) if isinstance(x, np.ndarray) else x

    def _run(self, fn_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], module: str) -> Any:
        import importlib

        fn = getattr(importlib.import_module(f"librobot.kernels.reference.{module}"), fn_name)
        args = tuple(self._to_torch(a) for a in args)
        kwargs = {k: self._to_torch(v) for k, v in kwargs.items()}
        return fn(*args, **kwargs)

    @staticmethod
    def _deliver(result: Any, out: Any, like_numpy: bool) -> Any:
        if out is not None:
            if isinstance(out, np.ndarray):
                out[...] = result.numpy()
            else:
                out.copy_(result)
            return out
        return result.numpy() if like_numpy else result

    # ------------------------------------------------------------------ ops
    def attention(self, call: Any) -> Any:
        if call.op == "attention":
            k, v = call.segments[0]
            result = self._run("attention", (call.q, k, v), call.raw, "attention")
        else:
            (kp, vp), (k, v) = call.segments
            result = self._run("attention_with_prefix", (call.q, k, v, kp, vp), call.raw, "attention")
        return self._deliver(result, call.out, call.kind == "numpy")

    def _step(self, call: Any) -> Any:
        name, args, kwargs = call.raw
        result = self._run(name, args, kwargs, "sampling")
        numpy = call.kind == "numpy"
        if isinstance(result, tuple):
            outs = call.outs or (None, None)
            return tuple(self._deliver(r, o, numpy) for r, o in zip(result, outs))
        return self._deliver(result, call.outs[0] if call.outs else None, numpy)

    def diffusion(self, call: Any, coef: Any) -> Any:
        return self._step(call)

    def euler(self, call: Any, dt: float) -> Any:
        return self._step(call)

    def heun(self, call: Any, dt: float) -> Any:
        return self._step(call)

    def edm_euler(self, call: Any, sigma_hat: float, sigma_next: float) -> Any:
        return self._step(call)

    def edm_heun(self, call: Any, sigma_hat: float, sigma_next: float) -> Any:
        return self._step(call)
