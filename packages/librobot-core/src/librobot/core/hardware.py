"""What the processor can do, and the inference precision ``auto`` picks from it. Torch-free, so
``librobot info`` and the edge tier can answer without torch.

``auto`` means bf16 where the CPU multiplies bf16 natively (Intel AMX-BF16 or AVX512-BF16, Arm
BF16) and fp32 elsewhere: without those instructions oneDNN converts bf16 to fp32 around fp32
arithmetic, which costs more than it saves (not yet measured on such a machine here). On a GPU,
bf16 where the device has it (Ampere and later, the Orin included), else fp16.
"""

from __future__ import annotations

import difflib
import platform
from dataclasses import dataclass
from pathlib import Path

from librobot.core.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# the flags that decide which matmul paths are fast, in the order `librobot info` lists them
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "bf16",
)
_NATIVE_BF16 = ("amx_bf16", "avx512_bf16", "bf16")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    @property
    def isa(self) -> list[str]:
        """The matmul-relevant instruction-set flags this CPU has."""
        return [flag for flag in ISA_FLAGS if flag in self.flags]

    @property
    def native_bf16(self) -> bool:
        return any(flag in self.flags for flag in _NATIVE_BF16)


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's model and flags from /proc/cpuinfo text (x86 ``flags``, Arm ``Features``)."""
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model or platform.processor() or platform.machine(), flags)


def cpu_info(path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """This machine's CPU (no flags where /proc/cpuinfo does not exist: then ``auto`` is fp32)."""
    try:
        return parse_cpuinfo(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return CpuInfo(platform.processor() or platform.machine(), frozenset())


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        close = difflib.get_close_matches(str(precision), PRECISIONS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}{hint}")
    return precision


def resolve_precision(
    precision: str, *, device: str = "cpu", cpu: CpuInfo | None = None, gpu_bf16: bool = False
) -> str:
    """The precision ``precision`` means on ``device``: itself, or what ``auto`` picks there.

    ``gpu_bf16``: whether the GPU supports bf16 (the caller asks torch; this module cannot).
    """
    check_precision(precision)
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if gpu_bf16 else "fp16"
    return "bf16" if (cpu or cpu_info()).native_bf16 else "fp32"


def hardware_summary() -> dict[str, object]:
    """The ``cpu`` section of ``librobot info``."""
    cpu = cpu_info()
    return {
        "model": cpu.model,
        "isa": " ".join(cpu.isa) or "(none known)",
        "inference precision auto": resolve_precision("auto", cpu=cpu),
    }


__all__ = [
    "PRECISIONS",
    "CpuInfo",
    "check_precision",
    "cpu_info",
    "hardware_summary",
    "parse_cpuinfo",
    "resolve_precision",
]
