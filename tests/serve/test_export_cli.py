"""`librobot export` and `librobot serve CHECKPOINT` for torch policies, int8/fp16 exports, task
tables, and the export's errors (each names the problem and the fix; a failed export writes nothing)."""

import json

import numpy as np
import pytest
from test_export_helpers import TASKS, action_scale, build, observation, save_policy

from librobot.core.cli import build_parser
from librobot.core.errors import ConfigError, SpecError
from librobot.serve import cli as serve_cli
from librobot.serve.export import ExportError, add_tasks, export_policy
from librobot.serve.onnx_policy import OnnxPolicy
from librobot.serve.torch_policy import TorchPolicy

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A training run folder (the policy in <run>/policy) holding a π0-style policy."""
    run = tmp_path_factory.mktemp("run")
    save_policy("pi0", run / "policy")
    return run


def test_export_command_on_a_run_folder_writes_a_verified_export(run_folder, tmp_path, capsys):
    out = tmp_path / "exported"
    args = build_parser().parse_args(["export", str(run_folder), "--tasks", *TASKS, "--out", str(out)])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["framework"] == "pi0" and summary["parity_vs_torch"]["max_abs_normalized"] <= 1e-4
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "policy.json", "policy.onnx"]
    # RTC inputs: a prefix pulls the chunk's first steps toward it, zero weights leave it free
    policy, rng = OnnxPolicy(out), np.random.default_rng(0)
    obs, noise = observation(rng), rng.standard_normal((policy.chunk_size, 3)).astype(np.float32)
    free = policy.predict_chunk(obs, TASKS[0], noise=noise)
    target = free + 2.0
    guided = policy.predict_chunk(obs, TASKS[0], noise=noise, prefix_actions=target[:2], prefix_weights=np.ones(2))
    assert np.abs(guided[:2] - target[:2]).mean() < 0.5 * np.abs(free[:2] - target[:2]).mean()


def test_serve_loads_torch_policy_folders_and_run_folders(run_folder):
    policy = serve_cli.load_policy(str(run_folder), task=TASKS[1])
    assert isinstance(policy, TorchPolicy) and policy.task == TASKS[1]
    direct = serve_cli.load_policy(str(run_folder / "policy"))
    obs = observation(np.random.default_rng(2))
    np.testing.assert_array_equal(policy.predict_chunk(obs), direct.predict_chunk(obs, TASKS[1]))


def test_int8_export_reports_its_measured_cost(tmp_path):
    folder = save_policy("groot", tmp_path / "policy")
    result = export_policy(folder, tmp_path / "int8", int8=True, tasks=list(TASKS))
    cost = result.report["int8_vs_fp32"]
    assert result.report["precision"] == "int8" and OnnxPolicy(result.path).spec.quantization == "int8-dynamic"
    assert 0.0 < cost["max_abs"] < 1.0 and np.isfinite(cost["mean_abs"])  # a real, bounded error
    assert result.report["parity_fp32_vs_torch"]["max_abs_normalized"] <= 1e-4  # fp32 verified first


def test_fp16_export_keeps_float32_inputs_and_is_close_to_torch(tmp_path):
    import onnx

    folder = save_policy("act", tmp_path / "policy")
    result = export_policy(folder, tmp_path / "fp16", fp16=True, tasks=list(TASKS))
    graph = onnx.load(str(result.path / "policy.onnx")).graph
    assert all(i.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16 for i in graph.input)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    err = result.report["parity_vs_torch"]["max_abs_normalized"]
    assert 0.0 < err < 2e-2  # half precision: small, but not float32's


def test_add_tasks_extends_the_table_without_touching_the_graph(tmp_path):
    folder = save_policy("groot", tmp_path / "policy")
    result = export_policy(folder, tmp_path / "export", tasks=[TASKS[1]])  # its prompt sets the length
    before = OnnxPolicy(result.path).spec.model_sha256
    add_tasks(result.path, ["wipe the table"], folder)
    policy = OnnxPolicy(result.path)
    assert policy.spec.model_sha256 == before and set(policy.known_tasks) == {TASKS[1], "wipe the table"}
    rng = np.random.default_rng(4)
    obs, noise = observation(rng), rng.standard_normal((policy.chunk_size, 3)).astype(np.float32)
    ref = TorchPolicy.from_pretrained(folder).predict_chunk(obs, "wipe the table", noise=noise)
    got = policy.predict_chunk(obs, "wipe the table", noise=noise)
    assert np.max(np.abs(got - ref) / action_scale()) <= 1e-4
    with pytest.raises(SpecError, match="--max-task-tokens"):  # a prompt longer than the graph takes
        add_tasks(result.path, [TASKS[0]], folder)


def test_export_errors_name_the_problem_and_the_fix(tmp_path):
    model = build("groot")
    with pytest.raises(ConfigError, match="--tasks"):
        export_policy(model, tmp_path / "a")
    with pytest.raises(ConfigError, match="alternatives"):
        export_policy(model, tmp_path / "a", fp16=True, int8=True, tasks=list(TASKS))
    with pytest.raises(ConfigError, match="max_task_tokens=3"):
        export_policy(model, tmp_path / "a", tasks=list(TASKS), max_task_tokens=3)
    ddpm = build("groot", head_type="diffusion", head={"sampler": "ddpm", "num_train_timesteps": 4, "depth": 1})
    with pytest.raises(ExportError, match=r"groot: .*fresh noise.*'ddpm'"):
        export_policy(ddpm, tmp_path / "a", tasks=list(TASKS))
    with pytest.raises(ConfigError, match="not a policy folder"):
        export_policy(tmp_path, tmp_path / "a", tasks=list(TASKS))
    assert not (tmp_path / "a").exists()


def test_a_failed_verification_leaves_the_previous_export_in_place(tmp_path):
    model = build("openvla-oft")
    out = tmp_path / "export"
    export_policy(model, out, tasks=list(TASKS))
    sha = OnnxPolicy(out).spec.model_sha256
    with pytest.raises(ExportError, match="openvla-oft: the exported ONNX graph disagrees"):
        export_policy(model, out, tasks=list(TASKS), tolerance=-1.0)  # no error can be below 0
    assert OnnxPolicy(out).spec.model_sha256 == sha
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary folders left behind
