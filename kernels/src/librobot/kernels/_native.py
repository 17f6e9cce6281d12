"""Loads the compiled modules (_cpu, _cuda) without ever failing the import of librobot.kernels.

``_build_config.json`` (written by CMake next to the modules) says what the build produced, so a
module the build skipped (no CUDA compiler) is reported as "not built" quietly, while a module that
was built but cannot be loaded (missing or broken .so) raises one warning and the dispatcher falls
back to the next backend (ultimately the torch reference).
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

_HERE = Path(__file__).resolve().parent
REBUILD_HINT = "reinstall librobot-kernels (pip install ./kernels) to rebuild it"


def _read_config() -> dict[str, Any] | None:
    # Editable installs keep the compiled files in site-packages and the sources in the tree:
    # look in every directory of the package.
    package = sys.modules.get("librobot.kernels")
    for folder in list(getattr(package, "__path__", [])) or [str(_HERE)]:
        try:
            return json.loads((Path(folder) / "_build_config.json").read_text())
        except (OSError, ValueError):
            continue
    return None


def _import(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(f"librobot.kernels.{name}"), None
    except Exception as exc:  # a broken .so can raise ImportError, OSError, SystemError...
        return None, f"{type(exc).__name__}: {exc}"


BUILD_CONFIG = _read_config()
cpu, _cpu_error = _import("_cpu")
cuda: ModuleType | None = None
_cuda_error: str | None = None

_problems: list[str] = []
if BUILD_CONFIG is None and cpu is None:
    CPU_REASON: str | None = f"not built: no compiled extension next to {_HERE} ({_cpu_error}); {REBUILD_HINT}"
    _problems.append("the compiled extension is not built")
elif cpu is None:
    CPU_REASON = f"the compiled module failed to load ({_cpu_error}); {REBUILD_HINT}"
    _problems.append(f"_cpu failed to load ({_cpu_error})")
else:
    CPU_REASON = None

if BUILD_CONFIG is not None and not BUILD_CONFIG.get("cuda"):
    CUDA_REASON: str | None = f"not built: {BUILD_CONFIG.get('cuda_reason') or 'CUDA was off at build time'}"
else:
    cuda, _cuda_error = _import("_cuda")
    if cuda is not None:
        CUDA_REASON = None
    elif BUILD_CONFIG is None:
        CUDA_REASON = "not built (no build configuration found)"
    else:
        CUDA_REASON = f"the compiled module failed to load ({_cuda_error}); {REBUILD_HINT}"
        _problems.append(f"_cuda failed to load ({_cuda_error})")

if _problems:
    warnings.warn(
        "librobot.kernels: " + "; ".join(_problems) + ". Affected ops fall back to the torch reference "
        f"implementation (slower); {REBUILD_HINT}.",
        RuntimeWarning,
        stacklevel=2,
    )
