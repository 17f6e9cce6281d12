"""`librobot serve`, the policy-source hook, and the build-time gRPC code."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _serve_testlib import LinearChunkPolicy, write_linear_onnx

from librobot.core.cli import build_parser
from librobot.core.errors import ConfigError, MissingExtraError
from librobot.serve import cli as serve_cli
from librobot.serve.client import GrpcPolicyClient, RestPolicyClient
from librobot.serve.onnx_policy import OnnxPolicy

TOKEN = "cli-test-token-" + "q" * 24


@pytest.fixture()
def export_dir(tmp_path):
    w, b = write_linear_onnx(tmp_path / "export")
    return tmp_path / "export", w, b


def test_serve_command_is_contributed_with_its_options(export_dir, tmp_path):
    directory, w, b = export_dir
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o600)
    args = build_parser().parse_args(
        [
            "serve",
            "--onnx",
            str(directory),
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--token-file",
            str(tokens),
            "--max-batch-size",
            "4",
            "--read-timeout-s",
            "2.5",
            "--max-connections",
            "32",
            "--inference-timeout-s",
            "12",
            "--docs",
        ]
    )
    assert args.func is serve_cli._cmd_serve and args.host == "127.0.0.1"
    service, servers = serve_cli.build_servers(args)
    config = service.config
    limits = (config.read_timeout_s, config.max_connections, config.inference_timeout_s, config.docs)
    assert limits == (2.5, 32, 12, True)
    try:
        for server in servers:
            server.start()
        rest, grpc_server = servers
        state = np.arange(6, dtype=np.float32)
        expected = (state @ w + b).reshape(4, 2)
        for client in (RestPolicyClient(rest.url, token=TOKEN), GrpcPolicyClient(grpc_server.target, token=TOKEN)):
            np.testing.assert_allclose(
                client.predict_chunk({"observation.state": state}), expected, rtol=1e-5, atol=1e-5
            )
        assert service.config.max_batch_size == 4 and isinstance(service.policy, OnnxPolicy)
    finally:
        for server in servers:
            server.stop()
        service.close()


def test_serve_limits_default_to_the_service_defaults(export_dir):
    args = build_parser().parse_args(["serve", "--onnx", str(export_dir[0]), "--port", "0"])
    service, servers = serve_cli.build_servers(args)
    try:
        config = service.config
        assert (config.read_timeout_s, config.max_connections, config.inference_timeout_s, config.docs) == (
            10.0,
            128,
            30.0,
            False,
        )
    finally:
        for server in servers:
            server.stop()
        service.close()


def test_policy_sources_and_the_checkpoint_hook(export_dir, tmp_path, monkeypatch):
    directory, _, _ = export_dir
    assert isinstance(serve_cli.load_policy(str(directory)), OnnxPolicy)  # an export directory as CHECKPOINT
    assert isinstance(serve_cli.load_policy(onnx=str(directory / "policy.onnx")), OnnxPolicy)
    with pytest.raises(ConfigError, match="exactly one policy source"):
        serve_cli.load_policy(str(directory), onnx=str(directory))
    torch_ckpt = tmp_path / "ckpt"
    torch_ckpt.mkdir()
    with pytest.raises(ConfigError, match="librobot export CHECKPOINT --format onnx"):
        serve_cli.load_policy(str(torch_ckpt))
    policy = LinearChunkPolicy.random(3, 4, 2)
    monkeypatch.setattr(
        serve_cli, "CHECKPOINT_LOADERS", [lambda path: None, lambda path: policy if path == torch_ckpt else None]
    )
    assert serve_cli.load_policy(str(torch_ckpt)) is policy


def test_librobot_serve_runs_as_a_process_and_stops_on_sigterm(export_dir):
    directory, w, b = export_dir
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "librobot.core", "serve", "--onnx", str(directory), "--port", "0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        for line in proc.stderr:  # the log line naming the bound address
            match = re.search(r"serving OnnxPolicy on (http://\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url, "server did not report its address"
        state = np.ones(6, np.float32)
        np.testing.assert_allclose(
            RestPolicyClient(url).predict_chunk({"observation.state": state}),
            (state @ w + b).reshape(4, 2),
            rtol=1e-5,
            atol=1e-5,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_generated_grpc_code_matches_the_proto(tmp_path):
    from librobot.serve.proto import _generate

    fresh = _generate.generate(out_root=tmp_path)
    for new, installed in zip(fresh, _generate.OUTPUTS):
        assert installed.is_file(), (
            f"{installed} missing: reinstall librobot-serve or run python -m librobot.serve.proto"
        )
        assert new.read_text() == Path(installed).read_text(), f"{installed.name} is stale: regenerate it"


def test_missing_generated_code_gives_an_actionable_error(monkeypatch):
    import importlib

    from librobot.serve import proto

    real = importlib.import_module

    def fake(name, *args):
        if name.endswith("policy_pb2"):
            raise ModuleNotFoundError(f"No module named '{name}'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(MissingExtraError, match=r"python -m librobot.serve.proto"):
        proto.load()
