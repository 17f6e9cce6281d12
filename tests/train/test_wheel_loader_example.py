"""The wheel-loader application as docs/wheel_loader.md runs it, at toy size: record scripted
dig-and-dump demonstrations, train configs/wheel_loader/groot.yaml, evaluate in closed loop,
export to ONNX, and check the values each stage hands the next."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "wheel_loader" / "groot.yaml"
ENV = "wheel-loader-dig-dump"
TASK = "dig a bucket of gravel from the pile and dump it into the truck"


def test_the_documented_wheel_loader_path_at_toy_size(tmp_path, monkeypatch):
    from librobot.core.cli import main as librobot_main
    from librobot.data.dataset import StoreDataset
    from librobot.robots.drivers.can_layout import ACTION_SIGNALS, STATE_SIGNALS
    from librobot.robots.sim import api as sim_api
    from librobot.robots.wheel_loader import wheel_loader_spec
    from librobot.serve.onnx_policy import OnnxPolicy
    from librobot.serve.torch_policy import TorchPolicy
    from librobot.train.config import load_run_config
    from librobot.train.metrics import read_jsonl
    from librobot.train.run import train_from_config

    spec = wheel_loader_spec()
    data, run = tmp_path / "data" / "wheel-loader", tmp_path / "runs" / "wheel-loader-groot"

    # 1. record: the scripted expert, with the top camera the config's policy reads
    assert librobot_main(["sim", "record", "--env", ENV, "--episodes", "2", "--out", str(data)]) == 0
    store = StoreDataset(str(data)).store
    assert store.num_episodes == 2
    state, action = store.features["observation.state"], store.features["action"]
    assert tuple(state.shape) == (22,) and tuple(state.names) == tuple(STATE_SIGNALS)
    assert tuple(action.shape) == (6,) and tuple(action.names) == tuple(ACTION_SIGNALS)
    assert tuple(store.features["observation.images.top"].shape) == (3, 96, 96)

    # 2. train from the shipped config, a few steps
    steps = 6
    overrides = [
        f"data.path={data}",
        f"run_dir={run}",
        f"train.max_steps={steps}",
        "train.max_time=null",
        "train.batch_size=8",
        "scheduler.warmup_steps=0",
        "checkpoint.every_n_steps=0",
        "eval.max_batches=2",
        "logging.log_every_n_steps=1",
        "logging.tensorboard=false",
        "logging.plot=false",
        "logging.progress=false",
    ]
    cfg, raw = load_run_config(CONFIG, overrides)
    assert cfg.model["framework"] == "groot" and cfg.data["action_horizon"] == 16
    result = train_from_config(raw, configure_logs=False)
    assert result.step == steps
    losses = [r["train/loss"] for r in read_jsonl(run / "metrics.jsonl") if "train/loss" in r]
    assert len(losses) == steps and all(math.isfinite(v) for v in losses)
    assert (run / "policy" / "manifest.json").is_file()  # the export-policy callback ran
    saved = json.loads((run / "policy" / "config.json").read_text())["config"]
    assert saved["state_dim"] == 22 and saved["action_dim"] == 6 and saved["cameras"] == ["top"]

    # 3. evaluate one episode in closed loop; every command that reached the simulator is recorded
    commanded: list[np.ndarray] = []
    make_env = sim_api.make_env

    def recording_env(name, **kwargs):
        env = make_env(name, **kwargs)
        step = env.step

        def step_and_record(a):
            commanded.append(np.array(a, copy=True))
            return step(a)

        env.step = step_and_record
        return env

    monkeypatch.setattr(sim_api, "make_env", recording_env)
    out = tmp_path / "eval"
    command = ["eval", str(run), "--env", ENV, "--episodes", "1", "--num-envs", "1", "--max-steps", "40",
               "--videos", "0", "--out", str(out)]  # fmt: skip
    assert librobot_main(command) == 0
    monkeypatch.undo()
    report = json.loads((out / "report.json").read_text())
    assert report["episodes"] == 1 and report["env_steps"] == len(commanded) > 0
    actions = np.stack(commanded)
    assert actions.shape[1] == 6 and np.isfinite(actions).all()
    low, high = spec.action_space.low_array.astype(np.float32), spec.action_space.high_array.astype(np.float32)
    assert (actions >= low).all() and (actions <= high).all(), "a command outside the wheel loader's limits"

    # 4. export fp32 ONNX at the camera's size; it matches torch on a fresh simulator observation
    onnx_dir = tmp_path / "onnx-fp32"
    assert librobot_main(["export", str(run), "--format", "onnx", "--tasks", TASK, "--image-size", "96", "96",
                          "--out", str(onnx_dir)]) == 0  # fmt: skip
    exported, torch_policy = OnnxPolicy(onnx_dir), TorchPolicy.from_pretrained(run / "policy")
    env = make_env(ENV, render=True)
    try:
        obs, _ = env.reset(seed=4321)
    finally:
        env.close()
    frame = obs["observation.images.top"]  # uint8 [96, 96, 3] as the simulator renders it
    noise = np.random.default_rng(7).standard_normal((exported.chunk_size, 6)).astype(np.float32)
    from_torch = torch_policy.predict_chunk(
        {"observation.state": obs["observation.state"], "observation.images.top": frame}, TASK, noise=noise
    )
    from_onnx = exported.predict_chunk(  # the camera's channel-last frame, as the torch policy takes it
        {"observation.state": obs["observation.state"], "observation.images.top": frame}, TASK, noise=noise
    )
    assert from_onnx.shape == (16, 6) and np.isfinite(from_onnx).all()
    np.testing.assert_allclose(from_onnx, from_torch, atol=1e-4, rtol=0)
    # 5. the export itself drives the simulator in closed loop (what the Orin runs without torch)
    command = ["eval", str(onnx_dir), "--env", ENV, "--episodes", "1", "--num-envs", "1", "--max-steps", "20",
               "--videos", "0", "--out", str(tmp_path / "eval-onnx")]  # fmt: skip
    assert librobot_main(command) == 0
    assert json.loads((tmp_path / "eval-onnx" / "report.json").read_text())["env_steps"] == 20
