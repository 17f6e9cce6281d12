"""Whole-policy export of every registered framework: ONNX parity with torch, the edge path without
torch, and TorchScript.

Parity is measured on fresh random observations and fresh noise, on the normalised scale (the
error divided by the action normaliser's per-dimension scale), against the torch policy itself
(``predict_action`` with the real tokenizer), for every task of the export's table.
"""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from test_export_helpers import TASKS, A, S, action_scale, observation, save_policy

from librobot.models import list_vlas
from librobot.serve.export import export_policy
from librobot.serve.onnx_policy import OnnxPolicy
from librobot.serve.torch_policy import TorchPolicy

pytestmark = pytest.mark.torch

FRAMEWORKS = list_vlas()
TOL = 1e-4  # max abs error, normalised action units


@pytest.fixture(scope="module", params=FRAMEWORKS)
def exported(request, tmp_path_factory):
    """(name, policy folder, ONNX export result) — one export per framework, shared by the tests."""
    name = request.param
    root = tmp_path_factory.mktemp(name)
    folder = save_policy(name, root / "policy")
    result = export_policy(folder, root / "export", tasks=list(TASKS))
    return name, folder, result


def test_onnx_export_matches_torch_on_fresh_inputs_and_noise(exported):
    name, folder, result = exported
    report = json.loads((result.path / "export.json").read_text())
    assert report["framework"] == name and report["precision"] == "fp32"
    assert report["parity_fp32_vs_torch"]["max_abs_normalized"] <= TOL  # measured at export, every task

    onnx, torch_policy = OnnxPolicy(result.path), TorchPolicy.from_pretrained(folder)
    assert onnx.obs_horizon == torch_policy.obs_horizon == result.layout.history  # the training window
    assert set(onnx.known_tasks) == set(TASKS) and onnx.chunk_size == torch_policy.chunk_size and onnx.action_dim == A
    rng = np.random.default_rng(1234)
    chunks = []
    for i in range(4):
        obs, task = observation(rng, onnx.obs_horizon), TASKS[i % 2]
        kwargs = {}
        if onnx.spec.noise is not None:
            kwargs["noise"] = rng.standard_normal(tuple(onnx.spec.noise["shape"])).astype(np.float32)
        got = onnx.predict_chunk(obs, task, **kwargs)
        ref = torch_policy.predict_chunk(obs, task, **kwargs)
        assert got.shape == ref.shape == (torch_policy.chunk_size, A)
        assert np.max(np.abs(got - ref) / action_scale()) <= TOL, f"{name}: ONNX and torch disagree"
        chunks.append(got)
    # non-trivial: the chunks differ between observations, so agreeing means something
    assert np.ptp(np.stack(chunks), axis=0).max() > 1e-3, f"{name}: outputs do not vary with the inputs"


def test_noise_and_task_inputs_follow_the_policy(exported):
    name, _, result = exported
    spec = OnnxPolicy(result.path).spec
    stochastic = name in ("pi0", "groot", "octo", "custom")  # flow/diffusion heads by default
    assert (spec.noise is not None) == stochastic
    assert (spec.rtc is not None) == (name == "pi0")  # the framework taking sampling guidance
    assert spec.task["length"] >= max(len(ids) for ids in spec.task["table"].values())
    assert spec.batch == 1 and spec.normalization_in_graph


def test_edge_path_loads_the_export_without_torch_or_librobot_models(exported):
    name, _, result = exported
    if name not in ("pi0", "act"):  # one stochastic and one deterministic policy is enough here
        return
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['librobot.models'] = None\n"
        "import numpy as np\n"
        "from librobot.serve.onnx_policy import OnnxPolicy\n"
        f"p = OnnxPolicy({str(result.path)!r}, seed=3)\n"
        "obs = {b.name: np.full(b.shape, 0.5, np.float32) for b in p.spec.inputs}\n"
        f"chunk = p.predict_chunk(obs, {TASKS[0]!r})\n"
        "assert 'torch' not in {m for m in sys.modules if sys.modules[m] is not None}\n"
        "print(chunk.shape, bool(np.isfinite(chunk).all()))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"({result.layout.horizon}, {A}) True"


def test_torchscript_export_matches_torch(exported, tmp_path):
    import torch

    _, folder, _ = exported
    result = export_policy(folder, tmp_path / "ts", format="torchscript", tasks=list(TASKS))
    assert sorted(p.name for p in result.path.iterdir()) == ["export.json", "policy.pt", "torchscript.json"]
    assert result.report["parity_vs_torch"]["max_abs_normalized"] <= TOL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 marks TorchScript deprecated
        module = torch.jit.load(str(result.path / "policy.pt"))
    torch_policy = TorchPolicy.from_pretrained(folder)
    rng = np.random.default_rng(7)
    history = result.layout.history
    obs, task = observation(rng, history), TASKS[1]
    feeds = {
        "state": obs["observation.state"].reshape(1, history, S),
        "image_front": obs["observation.images.front"].reshape(1, history, *obs["observation.images.front"].shape[-3:]),
    }
    ids = result.layout.task.table[task]
    feeds["task_ids"] = np.zeros((1, result.layout.task.length), np.int64) + result.layout.task.pad_id
    feeds["task_ids"][0, : len(ids)] = ids
    feeds["task_mask"] = (np.arange(result.layout.task.length) < len(ids)).astype(np.int64)[None]
    kwargs = {}
    if result.layout.noise:
        kwargs["noise"] = feeds["noise"] = rng.standard_normal((1, result.layout.horizon, A)).astype(np.float32)
        kwargs["noise"] = kwargs["noise"][0]
    if result.layout.rtc:
        feeds["prefix_actions"] = np.zeros((1, result.layout.horizon, A), np.float32)
        feeds["prefix_weights"] = np.zeros((1, result.layout.horizon), np.float32)
    with torch.no_grad():
        got = module(*(torch.from_numpy(feeds[n]) for n in result.layout.input_names()))[0].numpy()
    ref = torch_policy.predict_chunk(obs, task, **kwargs)
    assert np.max(np.abs(got - ref) / action_scale()) <= TOL
