"""Shared fixtures for the kernels tests: fresh random seeds, dtype tolerances, a float64 check."""

from __future__ import annotations

import random
import shutil

import pytest

# (rtol, atol) against a float64 reference computed from the same (rounded) inputs: float32 math,
# then one rounding of the output to the input dtype.
TOLERANCES = {
    "float32": (1e-5, 2e-5),
    "float16": (2e-3, 2e-3),
    "bfloat16": (1.6e-2, 1.6e-2),
    "float64": (1e-10, 1e-10),
}


@pytest.fixture
def seed() -> int:
    """A fresh seed per test (inputs differ every run); failures print it for reproduction."""
    return random.SystemRandom().randrange(2**31)


@pytest.fixture
def close():
    """assert_close(got, want64, dtype_name, msg): compare with dtype-appropriate bounds; NaN fails."""
    import torch

    def check(got, want, dtype: str, msg: str = "", scale: float = 1.0) -> None:
        rtol, atol = TOLERANCES[dtype]
        got64 = torch.as_tensor(got).to(torch.float64) if not isinstance(got, torch.Tensor) else got.double()
        torch.testing.assert_close(got64.cpu(), want.double().cpu(), rtol=rtol * scale, atol=atol * scale, msg=msg)

    return check


def has_nvcc() -> bool:
    return shutil.which("nvcc") is not None


def _runnable_isas() -> list[str]:
    from librobot.kernels import _native

    if _native.cpu is None:  # the cpu tests then fail on their own, naming the load error
        return ["generic"]
    info = _native.cpu.build_info()
    return [isa for isa in info["isa_built"] if isa == "generic" or info["cpu_has_avx2_fma"]]


@pytest.fixture(params=_runnable_isas())
def cpu_isa(request):
    """Run a test once per CPU kernel variant built and runnable here (portable, AVX2)."""
    from librobot.kernels import _native

    previous = _native.cpu.build_info()["isa_selected"]
    _native.cpu.set_isa(request.param)
    yield request.param
    _native.cpu.set_isa(previous)
