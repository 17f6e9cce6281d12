"""What the kernels need to know about an input array, for torch tensors and numpy arrays alike.

Torch is never imported here: a tensor is recognised through ``sys.modules`` (if the caller has a
tensor, torch is already loaded), so ``import librobot.kernels`` works on a torch-free install.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from librobot.core.errors import SpecError

# dtype codes shared with csrc/common.h
F32, F16, BF16, F64 = 0, 1, 2, 3
CODE_NAMES = {F32: "float32", F16: "float16", BF16: "bfloat16", F64: "float64"}
_NP_CODES = {np.dtype(np.float32): F32, np.dtype(np.float16): F16, np.dtype(np.float64): F64}
_TORCH_CODES: dict[Any, int] = {}


def torch_module() -> Any:
    return sys.modules.get("torch")


def is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def kind(x: Any, name: str = "input") -> str:
    """'torch' or 'numpy'; anything else is a SpecError."""
    if isinstance(x, np.ndarray):
        return "numpy"
    if is_torch(x):
        return "torch"
    raise SpecError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def dtype_code(x: Any) -> int | None:
    """The kernels' code for x's dtype, or None when no compiled kernel handles it."""
    if isinstance(x, np.ndarray):
        code = _NP_CODES.get(x.dtype)
        if code is None and x.dtype.name == "bfloat16" and x.dtype.itemsize == 2:  # ml_dtypes
            return BF16
        return code
    if not _TORCH_CODES:
        torch = sys.modules["torch"]
        _TORCH_CODES.update({torch.float32: F32, torch.float16: F16, torch.bfloat16: BF16, torch.float64: F64})
    return _TORCH_CODES.get(x.dtype)


def dtype_name(x: Any) -> str:
    return x.dtype.name if isinstance(x, np.ndarray) else str(x.dtype).replace("torch.", "")


def device_type(x: Any) -> str:
    return "cpu" if isinstance(x, np.ndarray) else x.device.type


def data_ptr(x: Any) -> int:
    if type(x) is np.ndarray or isinstance(x, np.ndarray):
        return int(x.__array_interface__["data"][0])
    return x.data_ptr()  # type: ignore[no-any-return]


def strides(x: Any) -> tuple[int, ...]:
    """Strides in elements."""
    if isinstance(x, np.ndarray):
        return tuple(s // x.itemsize for s in x.strides)
    return tuple(x.stride())


def elementwise_strides_ok(x: Any) -> bool:
    """numpy strides are in bytes and may not be a multiple of the item size (views of records)."""
    return not isinstance(x, np.ndarray) or all(s % x.itemsize == 0 for s in x.strides)


def is_contiguous(x: Any) -> bool:
    return bool(x.flags.c_contiguous) if isinstance(x, np.ndarray) else bool(x.is_contiguous())


def numel(x: Any) -> int:
    return int(x.size) if isinstance(x, np.ndarray) else int(x.numel())


def empty(shape: tuple[int, ...], like: Any) -> Any:
    if isinstance(like, np.ndarray):
        return np.empty(shape, dtype=like.dtype)
    return sys.modules["torch"].empty(shape, dtype=like.dtype, device=like.device)


def empty_like(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return np.empty_like(x, order="C")
    return sys.modules["torch"].empty_like(x, memory_format=sys.modules["torch"].contiguous_format)


def requires_grad(*xs: Any) -> bool:
    """True when autograd would record an op on these tensors (the compiled kernels have no backward)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.is_grad_enabled():
        return False
    return any(getattr(x, "requires_grad", False) for x in xs)


def tracing(x: Any) -> bool:
    """True while torch traces rather than runs (torch.compile, torch.export, jit tracing, fake or
    functional tensors): the compiled kernels need real memory, so the reference must run."""
    torch = sys.modules["torch"]
    if type(x) is not torch.Tensor and not isinstance(x, torch.nn.Parameter):
        return True  # a tensor subclass such as FakeTensor / FunctionalTensor
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling())


def int32_ids(ids: Any, like: Any, batch: int, length: int, name: str) -> tuple[Any, int]:
    """Block ids as a contiguous int32 array on ``like``'s device, plus the batch stride (0 for [L])."""
    if isinstance(like, np.ndarray):
        arr = np.asarray(ids.cpu().numpy() if is_torch(ids) else ids)
    else:
        torch = sys.modules["torch"]
        arr = ids if is_torch(ids) else torch.as_tensor(np.asarray(ids))
    if arr.ndim == 1:
        shape_ok, bstride = tuple(arr.shape) == (length,), 0
    else:
        shape_ok, bstride = tuple(arr.shape) == (batch, length), length
    if not shape_ok:
        raise SpecError(f"{name} must have shape [{length}] or [{batch}, {length}], got {list(arr.shape)}")
    if isinstance(like, np.ndarray):
        if arr.dtype.kind not in "iu":
            raise SpecError(f"{name} must hold integer block ids, got dtype {arr.dtype}")
        if arr.size and (arr.min() < -(2**31) or arr.max() >= 2**31):
            raise SpecError(f"{name} values must fit in int32")
        return np.ascontiguousarray(arr, dtype=np.int32), bstride
    torch = sys.modules["torch"]
    if arr.dtype.is_floating_point or arr.dtype.is_complex or arr.dtype == torch.bool:
        raise SpecError(f"{name} must hold integer block ids, got dtype {arr.dtype}")
    # Range check on host tensors only: on a GPU it would synchronise (and break CUDA graph capture).
    if arr.dtype == torch.int32 and arr.device == like.device and arr.is_contiguous():
        return arr, bstride
    if arr.dtype == torch.int64 and arr.is_cpu and arr.numel():
        lo, hi = torch.aminmax(arr)
        if int(lo) < -(2**31) or int(hi) >= 2**31:
            raise SpecError(f"{name} values must fit in int32")
    return arr.to(device=like.device, dtype=torch.int32).contiguous(), bstride


def bool_mask(mask: Any, like: Any, batch: int, length: int, name: str) -> Any:
    """A bool [batch, length] mask as a contiguous byte array (0/1) on ``like``'s device."""
    if isinstance(like, np.ndarray):
        arr = np.asarray(mask.cpu().numpy() if is_torch(mask) else mask)
        ok = arr.dtype == np.bool_
    else:
        arr = mask
        ok = is_torch(arr) and arr.dtype == sys.modules["torch"].bool
    if not ok or tuple(arr.shape) != (batch, length):
        raise SpecError(
            f"{name} must be bool [{batch}, {length}], got {getattr(arr, 'dtype', type(arr).__name__)} "
            f"{list(getattr(arr, 'shape', []))}"
        )
    if isinstance(like, np.ndarray):
        return np.ascontiguousarray(arr)
    return arr.to(device=like.device).contiguous()
