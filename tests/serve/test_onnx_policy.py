"""The ONNX runtime policy: parity with torch, the sidecar contract, int8 quantisation, no torch."""

import json
import subprocess
import sys

import numpy as np
import pytest
from _serve_testlib import ONNX_A, ONNX_H, ONNX_S, TASKS, export_tiny_flow, torch_reference

from librobot.core.errors import CheckpointError, ConfigError, SpecError
from librobot.serve.errors import GraphMismatchError
from librobot.serve.onnx_policy import OnnxPolicy
from librobot.serve.quantize import compare_policies, quantize_int8
from librobot.serve.sidecar import OnnxPolicySpec, load_sidecar

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_tiny_flow(tmp_path_factory.mktemp("tiny_flow"))


def _batch(rng, b, uint8=False):
    image = (
        rng.integers(0, 256, (b, 1, 3, 8, 8), dtype=np.uint8)
        if uint8
        else rng.random((b, 1, 3, 8, 8), dtype=np.float32)
    )
    return {"observation.state": rng.normal(size=(b, 1, ONNX_S)).astype(np.float32), "observation.images.wrist": image}


def test_onnx_matches_torch_within_1e_4_on_fresh_random_inputs(exported):
    module, directory = exported
    policy = OnnxPolicy(directory)
    rng = np.random.default_rng(123)
    tasks = [list(TASKS)[i % 3] for i in range(6)]
    free = None
    for uint8 in (False, True):
        obs = _batch(rng, 6, uint8)
        noise = rng.standard_normal((6, ONNX_H, ONNX_A), dtype=np.float32)
        pa = rng.normal(size=(6, ONNX_H, ONNX_A)).astype(np.float32)
        pw = np.tile(np.linspace(1, 0, ONNX_H, dtype=np.float32), (6, 1))
        for prefix in (None, (pa, pw)):
            kw = {} if prefix is None else {"prefix_actions": prefix[0], "prefix_weights": prefix[1]}
            got = policy.predict_chunks(obs, tasks, noise=noise, **kw)
            ref = torch_reference(module, policy.spec, obs, tasks, noise, *(prefix or ()))
            assert got.shape == (6, ONNX_H, ONNX_A)
            np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
            free = got if prefix is None else free
    # One observation without batch axis (state [S] for T_obs = 1) gives the batch's first chunk.
    one = {
        "observation.state": obs["observation.state"][0, 0].astype(np.float64),
        "observation.images.wrist": obs["observation.images.wrist"][0],
    }
    np.testing.assert_allclose(policy.predict_chunk(one, tasks[0], noise=noise[0]), free[0], atol=1e-5)


def test_noise_is_an_input_so_runs_are_reproducible(exported):
    _, directory = exported
    rng = np.random.default_rng(0)
    obs = {k: v[0] for k, v in _batch(rng, 1).items()}
    a, b = OnnxPolicy(directory, seed=7), OnnxPolicy(directory, seed=7)
    first = a.predict_chunk(obs, "open the drawer")
    np.testing.assert_array_equal(first, b.predict_chunk(obs, "open the drawer"))
    assert not np.allclose(first, a.predict_chunk(obs, "open the drawer"))  # fresh noise each call


def test_real_time_chunking_inputs_pull_the_chunk_onto_the_prefix(exported):
    _, directory = exported
    policy = OnnxPolicy(directory)
    assert policy.supports_rtc and set(policy.known_tasks) == set(TASKS)
    rng = np.random.default_rng(5)
    obs = {k: v[0] for k, v in _batch(rng, 1).items()}
    noise = rng.standard_normal((ONNX_H, ONNX_A), dtype=np.float32)
    free = policy.predict_chunk(obs, "push the button", noise=noise)
    prefix = free[:4] + 0.5  # a committed plan the free chunk does not follow
    guided = policy.predict_chunk(
        obs, "push the button", noise=noise, prefix_actions=prefix, prefix_weights=np.ones(4, np.float32)
    )
    assert np.abs(guided[:4] - prefix).max() < 0.5 * np.abs(free[:4] - prefix).max()


def test_bad_observations_and_tasks_name_the_field(exported):
    _, directory = exported
    policy = OnnxPolicy(directory)
    rng = np.random.default_rng(1)
    obs = {k: v[0] for k, v in _batch(rng, 1).items()}
    with pytest.raises(SpecError, match=r"'task'.*'open the drawer'"):
        policy.predict_chunk(obs, "open the drawr")
    with pytest.raises(SpecError, match=r"observation.state.*shape"):
        policy.predict_chunk({**obs, "observation.state": np.zeros(7, np.float32)}, "open the drawer")
    with pytest.raises(SpecError, match=r"observation.images.wrist.*missing"):
        policy.predict_chunk({"observation.state": obs["observation.state"]}, "open the drawer")
    with pytest.raises(SpecError, match="NaN"):
        policy.predict_chunk({**obs, "observation.state": np.full((1, ONNX_S), np.nan, np.float32)}, "open the drawer")
    with pytest.raises(SpecError, match="dtype"):
        policy.predict_chunk({**obs, "observation.state": np.zeros((1, ONNX_S), np.int32)}, "open the drawer")


def test_sidecar_round_trip_and_validation(exported, tmp_path):
    _, directory = exported
    spec, model = load_sidecar(directory)
    assert OnnxPolicySpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    doc = json.loads((directory / "policy.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "policy.onnx").write_bytes(model.read_bytes())
    for change, error, match in [
        ({"version": 2}, ConfigError, "version 2 is not supported"),
        ({"format": "something"}, ConfigError, "not a LibroBot ONNX sidecar"),
        ({"chunk_sz": 3}, ConfigError, "unknown keys"),
        ({"model_sha256": "0" * 64}, CheckpointError, "sha256"),
        ({"inputs": doc["inputs"][:1]}, GraphMismatchError, r"graph input 'image' .* not declared in the sidecar"),
        ({"noise": {"onnx_name": "noise", "shape": [8, 3], "distribution": "uniform"}}, ConfigError, "standard_normal"),
    ]:
        (bad / "policy.json").write_text(json.dumps({**doc, **change}))
        with pytest.raises(error, match=match):
            OnnxPolicy(bad)
    with pytest.raises(CheckpointError, match="no ONNX policy sidecar"):
        OnnxPolicy(tmp_path)


def test_dynamic_int8_quantisation_has_a_measured_small_cost(exported, tmp_path):
    _, directory = exported
    side = quantize_int8(directory, tmp_path / "int8")
    fp32, int8 = OnnxPolicy(directory), OnnxPolicy(side.parent)
    assert int8.spec.quantization == "int8-dynamic"
    import onnx

    ops = {n.op_type for n in onnx.load(str(int8.model_path)).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops  # weights really are int8
    rng = np.random.default_rng(9)
    error = compare_policies(fp32, int8, _batch(rng, 64), [list(TASKS)[i % 3] for i in range(64)])
    # Quantisation changes the actions, by a small fraction of their range on this model.
    assert 1e-4 < error["max_abs"] and error["max_rel_to_range"] < 0.05


def test_the_onnx_edge_path_imports_neither_torch_nor_models(exported):
    _, directory = exported
    code = f"""
import sys, numpy as np
import librobot.serve, librobot.serve.runtime, librobot.serve.onnx_policy, librobot.serve.rtc
import librobot.serve.client, librobot.serve.rest, librobot.serve.grpc_server, librobot.serve.service
from librobot.serve.onnx_policy import OnnxPolicy
p = OnnxPolicy({str(directory)!r})
a = p.predict_chunk({{"observation.state": np.zeros({ONNX_S}), "observation.images.wrist": np.zeros((3, 8, 8), np.uint8)}}, "push the button")
assert a.shape == ({ONNX_H}, {ONNX_A}), a.shape
bad = [m for m in sys.modules if m == "torch" or m.startswith(("torch.", "librobot.models", "librobot.kernels"))]
assert not bad, bad
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
