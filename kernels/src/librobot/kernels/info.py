"""What librobot-kernels was built with and which backends can run here.

``python -m librobot.kernels.info [--json]`` prints it; ``collect()`` is also the ``kernels``
entry of the ``librobot.info`` entry-point group, so ``librobot info`` shows the same section.
Imports neither torch nor triton (versions come from package metadata).
"""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def collect() -> dict[str, Any]:
    """Build configuration, native module details and each backend's status, as JSON-able data."""
    from librobot.kernels import __version__, _native, available_backends
    from librobot.kernels._dispatch import ENV_BACKEND
    from librobot.kernels.backends.triton import interpreting

    cfg = _native.BUILD_CONFIG
    info: dict[str, Any] = {
        "version": __version__,
        "built": "yes" if cfg else "no compiled extension found (reference ops only)",
    }
    if cfg:
        info["compiler"] = cfg.get("cxx_compiler")
        info["build_type"] = cfg.get("build_type")
        info["openmp"] = cfg.get("openmp")
        info["cpu_isa_built"] = ", ".join(cfg.get("cpu_isa", []))
        info["cuda_built"] = bool(cfg.get("cuda"))
        info["cuda_version"] = cfg.get("cuda_compiler_version")
        info["cuda_architectures"] = ", ".join(cfg.get("cuda_architectures", [])) or None
    if _native.cpu is not None:
        cpu = _native.cpu.build_info()
        info["cpu_isa_selected"] = cpu["isa_selected"]
        info["cpu_threads"] = cpu["max_threads"]
        info["cxx_flags"] = cpu["cxx_flags"]
    if _native.cuda is not None:
        cu = _native.cuda.build_info()
        info["cuda_runtime"] = cu["cuda_runtime"]
        info["cuda_devices"] = cu["devices"]
        if cu.get("device_names"):
            info["cuda_device_names"] = ", ".join(cu["device_names"])
        if cu.get("device_error"):
            info["cuda_device_error"] = cu["device_error"]
    info["torch"] = _version("torch") or "not installed (pip install 'librobot-kernels[torch]')"
    info["triton"] = _version("triton") or "not installed"
    if _version("triton"):
        info["triton_mode"] = "interpreter (TRITON_INTERPRET=1)" if interpreting() else "compiled (CUDA tensors)"
    info["backends"] = {name: why or "available" for name, why in available_backends().items()}
    if _native.cuda is not None and not info.get("cuda_devices"):
        info["backends"]["cuda"] = "built, but no CUDA device is visible here"
    info["forced_backend"] = os.environ.get(ENV_BACKEND) or None
    return info


def format_info(info: dict[str, Any]) -> str:
    lines = []
    for key, value in info.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k:<10} {v}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    info = collect()
    print(json.dumps(info, indent=2) if "--json" in args else format_info(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
