"""The dispatcher: automatic choice, forcing (argument and environment), decline reasons, the
error that lists every backend, autograd inputs, fallback when the compiled module is missing or
broken, the torch-free import, and the info report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import numpy as np
import pytest
import torch

import librobot.kernels as K
from librobot.core.errors import SpecError
from librobot.kernels import _dispatch
from librobot.kernels import reference as R
from librobot.kernels._attention import AttentionCall


def call_for(q, k=None, **kw):
    k = q if k is None else k
    return AttentionCall(
        "attention",
        q,
        [(k, k)],
        causal=False,
        window=None,
        q_blocks=None,
        kv_blocks=None,
        key_padding=None,
        pad_len=0,
        q_offset=None,
        scale=None,
        out=None,
        raw={},
        **kw,
    )


def test_auto_picks_cpu_for_cpu_tensors_and_reference_when_cpu_declines():
    q = torch.randn(1, 2, 9, 16)
    assert _dispatch.select("attention", "attention", call_for(q), None).name == "cpu"
    assert _dispatch.select("attention", "attention", call_for(q.double()), None).name == "reference"
    out = K.attention(q.double(), q.double(), q.double(), causal=True)  # float64 runs on the reference
    torch.testing.assert_close(out, R.attention(q.double(), q.double(), q.double(), causal=True))


def test_decline_reasons_name_the_problem():
    q = torch.randn(1, 2, 9, 16)
    cpu, triton, cuda = (_dispatch.get_backend(n) for n in ("cpu", "triton", "cuda"))
    assert "dtype float64" in cpu.declines("attention", call_for(q.double()))
    assert "device" in triton.declines("attention", call_for(q)) or triton.unavailable()
    cuda_reason = cuda.unavailable() or cuda.declines("attention", call_for(q))
    assert "not built" in cuda_reason or "device cpu" in cuda_reason
    leaf = q.clone().requires_grad_()
    assert "require grad" in cpu.declines("attention", call_for(leaf))


def test_inputs_that_require_grad_run_on_the_reference_and_backpropagate():
    q = torch.randn(1, 2, 9, 16, requires_grad=True)
    out = K.attention(q, q, q, causal=True)
    out.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    with torch.no_grad():  # without autograd recording, the compiled kernel takes them
        assert _dispatch.select("attention", "attention", call_for(q), None).name == "cpu"


def test_forcing_by_argument_and_by_environment(monkeypatch):
    q = torch.randn(1, 2, 9, 16)
    want = R.attention(q, q, q, window=3)
    torch.testing.assert_close(K.attention(q, q, q, window=3, backend="reference"), want)
    monkeypatch.setenv(K.ENV_BACKEND, "reference")
    assert _dispatch.select("attention", "attention", call_for(q), None).name == "reference"
    assert _dispatch.select("attention", "attention", call_for(q), "cpu").name == "cpu"  # argument wins
    monkeypatch.setenv(K.ENV_BACKEND, "cuda")
    with pytest.raises(K.NoBackendError, match=f"forced by the environment variable {K.ENV_BACKEND}"):
        K.attention(q, q, q)
    monkeypatch.setenv(K.ENV_BACKEND, "fastest")
    with pytest.raises(SpecError, match=r"unknown kernels backend 'fastest'.*reference, cpu, cuda, triton"):
        K.euler_step(q, q, 0.1)


def test_error_lists_every_backends_reason_when_none_fits():
    q = np.ones((1, 2, 4, 8), dtype=np.int32)  # no backend computes integer attention
    with pytest.raises(K.NoBackendError) as info:
        K.attention(q, q, q)
    message = str(info.value)
    for name in K.BACKENDS:
        assert f"{name}: " in message
    assert "dtype int32" in message and "numpy int32 arrays cannot be handed to torch" in message


def test_shape_errors_are_spec_errors():
    q = torch.randn(1, 4, 9, 16)
    with pytest.raises(SpecError, match="multiple of key/value heads"):
        K.attention(q, torch.randn(1, 3, 9, 16), torch.randn(1, 3, 9, 16))
    with pytest.raises(SpecError, match="q_blocks must have shape"):
        K.attention(q, q, q, q_blocks=torch.zeros(5, dtype=torch.long), kv_blocks=torch.zeros(9, dtype=torch.long))
    with pytest.raises(SpecError, match="out must be"):
        K.attention(q, q, q, out=torch.empty(1, 4, 9, 8))
    with pytest.raises(SpecError, match="needs noise"):
        K.ddpm_step(q, q, None, acp_t=0.5, acp_prev=0.8)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != K.ENV_BACKEND}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=120
    )


FALLBACK = """
    import importlib.abc, importlib.machinery, sys, warnings
    MODE = {mode!r}
    class Sabotage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "librobot.kernels._cpu":
                return None
            if MODE == "missing":
                raise ModuleNotFoundError("No module named 'librobot.kernels._cpu'")
            loader = importlib.machinery.ExtensionFileLoader(name, {junk!r})
            return importlib.util.spec_from_file_location(name, {junk!r}, loader=loader)
    import importlib.util
    sys.meta_path.insert(0, Sabotage())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import librobot.kernels as K
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) == 1, [str(w.message) for w in caught]
    print("WARNING:", runtime[0].message)
    import torch
    from librobot.kernels import reference as R
    q = torch.randn(1, 2, 5, 8)
    torch.testing.assert_close(K.attention(q, q, q, causal=True), R.attention(q, q, q, causal=True))
    torch.testing.assert_close(K.euler_step(q, q, 0.5), q + 0.5 * q)
    print("CPU:", K.available_backends()["cpu"])
    try:
        K.attention(q, q, q, backend="cpu")
    except K.NoBackendError as exc:
        print("FORCED:", exc)
"""


@pytest.mark.parametrize("mode", ["missing", "broken"])
def test_missing_or_broken_native_module_falls_back_with_one_warning(mode, tmp_path):
    junk = tmp_path / "_cpu.so"
    junk.write_bytes(b"this is not a shared library")
    proc = run_python(FALLBACK.format(mode=mode, junk=str(junk)), OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: librobot.kernels: _cpu failed to load" in proc.stdout
    assert "fall back to the torch reference" in proc.stdout
    assert "CPU: the compiled module failed to load" in proc.stdout
    assert "FORCED: attention: backend 'cpu'" in proc.stdout
    if mode == "broken":
        assert "ImportError" in proc.stdout


TORCH_FREE = """
    import importlib.abc, sys
    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError("No module named 'torch' (blocked by the test)")
    sys.meta_path.insert(0, NoTorch())
    import numpy as np
    import librobot.kernels as K
    from librobot.core.errors import MissingExtraError
    assert "torch" not in sys.modules
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 6, 16)).astype(np.float32)
    out = K.attention(q, q, q, causal=True)
    assert out.shape == q.shape and np.isfinite(out).all()
    x = rng.standard_normal((2, 50, 32))
    y = K.ddim_step(x, x, None, acp_t=0.5, acp_prev=0.9)
    assert y.dtype == np.float64 and np.isfinite(y).all()
    print("REFERENCE:", K.available_backends()["reference"])
    try:
        K.attention(q.astype(np.float64), q.astype(np.float64), q.astype(np.float64))
    except MissingExtraError as exc:
        print("MISSING:", exc)
    from librobot.kernels.info import collect
    print("INFO:", collect()["torch"])
    assert "torch" not in sys.modules
"""


def test_import_and_numpy_ops_work_without_torch():
    proc = run_python(TORCH_FREE, OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stderr
    assert "REFERENCE: torch is not installed (pip install 'librobot-kernels[torch]')" in proc.stdout
    assert "MISSING: attention: no kernels backend can run this call" in proc.stdout
    assert "pip install 'librobot-kernels[torch]'" in proc.stdout.split("MISSING:")[1]


def test_info_module_entry_point_and_cli():
    (ep,) = [e for e in entry_points(group="librobot.info") if e.name == "kernels"]
    info = ep.load()()
    assert info["backends"]["reference"] == "available" and info["backends"]["cpu"] == "available"
    assert info["built"] == "yes" and "generic" in info["cpu_isa_built"]
    proc = subprocess.run(
        [sys.executable, "-m", "librobot.kernels.info", "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert set(printed["backends"]) == set(K.BACKENDS)
    assert printed["cuda_built"] == info["cuda_built"]


def test_exported_graphs_use_the_reference_ops():
    class Block(torch.nn.Module):
        def forward(self, q, x, v):
            return K.attention(q, q, q, causal=True), K.euler_step(x, v, 0.5)

    q, x, v = torch.randn(1, 2, 7, 16), torch.randn(2, 5), torch.randn(2, 5)
    with torch.no_grad():
        program = torch.export.export(Block(), (q, x, v))
        out, step = program.module()(q, x, v)
    torch.testing.assert_close(out, R.attention(q, q, q, causal=True))
    torch.testing.assert_close(step, x + 0.5 * v)
