"""The CUDA sources compile for Jetson Orin (sm_87) and Hopper (sm_90) with the machine's nvcc:
device code through ptxas (so register and shared-memory limits are checked), and the pybind11
bindings with the host compiler. Compile-only: this runs where nvcc exists, GPU or not."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[2] / "kernels" / "csrc"
ARCHS = ("87", "90")

pytestmark = [
    pytest.mark.nvcc,
    pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH (the dev/CI images have it)"),
]


def nvcc(source: str, out: Path) -> subprocess.CompletedProcess:
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHS]
    cmd = [
        "nvcc",
        "-std=c++17",
        "-O3",
        "--use_fast_math",
        "-Xptxas=-warn-spills",
        f"-I{CSRC}",
        *gencode,
        "-c",
        str(CSRC / source),
        "-o",
        str(out),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_cuda_kernels_compile_for_sm87_and_sm90(tmp_path):
    sources = ["cuda_attention.cu", "cuda_sampling.cu"]
    with ThreadPoolExecutor(max_workers=2) as pool:  # the two files in parallel: ~half the wall time
        results = list(pool.map(lambda s: (s, nvcc(s, tmp_path / f"{s}.o")), sources))
    for source, proc in results:
        assert proc.returncode == 0, f"{source}:\n{proc.stderr[-4000:]}"
        obj = (tmp_path / f"{source}.o").read_bytes()
        for arch in ARCHS:  # one cubin per requested architecture is embedded
            assert f"sm_{arch}".encode() in obj, f"{source} has no sm_{arch} code"


def cuda_include_dirs() -> list[str]:
    """The include directories nvcc itself uses (from its dry run), for the host compiler."""
    proc = subprocess.run(
        ["nvcc", "-v", "--dryrun", "-x", "cu", "-c", "/dev/null", "-o", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    dirs = []
    for line in (proc.stdout + proc.stderr).splitlines():
        if "INCLUDES=" in line:
            dirs += [part.strip('"') for part in shlex.split(line.split("=", 1)[1]) if part not in ("-isystem",)]
    return [d[2:] if d.startswith("-I") else d for d in dirs if d]


def test_cuda_bindings_compile_with_the_host_compiler():
    import pybind11

    include = [str(CSRC), pybind11.get_include(), sysconfig.get_paths()["include"], *cuda_include_dirs()]
    cmd = [
        "c++",
        "-std=c++17",
        "-fsyntax-only",
        '-DLRK_VERSION="test"',
        '-DLRK_CUDA_ARCHS="87 90"',
        '-DLRK_CUDA_COMPILER="nvcc"',
        *[f"-I{p}" for p in include],
        str(CSRC / "cuda_module.cpp"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:] + f"\n(python {sys.version.split()[0]})"
