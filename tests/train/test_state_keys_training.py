"""Training on a state joined from several observation vectors (``data.state_keys``): the policy
records its parts and normalises each with that part's own statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from librobot.core.errors import ConfigError

STATE, ENV = "observation.state", "observation.environment_state"
TINY_VLM = {"name": "librobot-tiny-vlm", "image_size": 16, "patch_size": 8, "tokens_per_view": 4, "dim": 32,
            "depth": 1, "heads": 2, "kv_heads": 1, "max_text_tokens": 16}  # fmt: skip


def _store(path):
    from librobot.data.store import EpisodeWriter

    rng = np.random.default_rng(2)
    names = {STATE: ("x", "y"), ENV: ("x", "y", "theta")}
    with EpisodeWriter(path, fps=10.0, names=names) as writer:
        for length in (12, 9, 10):
            writer.add_episode(
                {
                    STATE: rng.normal(0.0, 1.0, (length, 2)).astype(np.float32),
                    ENV: rng.normal(50.0, 20.0, (length, 3)).astype(np.float32),
                    "action": rng.normal(0.0, 1.0, (length, 2)).astype(np.float32),
                },
                task="push the T",
            )
    return path


def _config(tmp_path, **model):
    return {
        "name": "parts",
        "run_dir": str(tmp_path / "run"),
        "model": {"factory": "vla", "framework": "groot", "vlm": TINY_VLM, "hidden_dim": 32,
                  "head": {"num_inference_steps": 2, "hidden_dim": 32, "depth": 1, "num_heads": 2}, **model},
        "data": {"factory": "store", "path": str(_store(tmp_path / "store")), "action_horizon": 4,
                 "state_keys": [ENV, STATE]},
        "train": {"max_steps": 2, "batch_size": 4, "seed": 0},
        "checkpoint": {"every_n_steps": 0, "keep_last": 1, "monitor": None},
        "logging": {"log_every_n_steps": 1, "tensorboard": False, "plot": False, "progress": False},
        "callbacks": [{"name": "export-policy"}],
    }  # fmt: skip


def test_a_run_with_state_keys_saves_a_policy_that_records_its_parts(tmp_path):
    from librobot.data.dataset import StoreDataset
    from librobot.serve.torch_policy import TorchPolicy
    from librobot.train.run import train_from_config

    config = _config(tmp_path)
    train_from_config(config, configure_logs=False)
    folder = tmp_path / "run" / "policy"
    saved = json.loads((folder / "config.json").read_text())["config"]
    assert saved["state_parts"] == [[ENV, 3], [STATE, 2]] and saved["state_dim"] == 5
    # observation.state's mode (mean_std) applied to each part with that part's own statistics
    stats = StoreDataset(config["data"]["path"]).store.stats
    norm = json.loads((folder / "normalization.json").read_text())["features"][STATE]
    assert norm["mode"] == "mean_std"
    np.testing.assert_allclose(norm["center"], stats[ENV]["mean"] + stats[STATE]["mean"], rtol=1e-6)
    np.testing.assert_allclose(norm["scale"], stats[ENV]["std"] + stats[STATE]["std"], rtol=1e-6)

    policy = TorchPolicy.from_pretrained(folder)
    assert [(p.key, p.width) for p in policy.state_parts] == [(ENV, 3), (STATE, 2)]
    env, state = np.array([40.0, 60.0, 55.0], np.float32), np.array([0.5, -0.5], np.float32)
    noise = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    parts = policy.predict_chunk({STATE: state, ENV: env}, "push the T", noise=noise)
    joined = policy.predict_chunk({STATE: np.concatenate([env, state])}, "push the T", noise=noise)
    np.testing.assert_array_equal(parts, joined)

    # `librobot eval --offline` rebuilds the run's dataset, state parts included
    from librobot.core.cli import main as librobot_main

    off = tmp_path / "offline"
    assert librobot_main(["eval", str(tmp_path / "run"), "--offline", "--split", "all", "--out", str(off)]) == 0
    assert json.loads((off / "offline.json").read_text())["samples"] == 12 + 9 + 10 - 3  # each episode's first frame


def test_the_hold_baseline_finds_the_robots_own_state_in_a_joined_state():
    from librobot.train.evaluation.offline import hold_indices

    joined = ("environment_state.x", "environment_state.y", "theta", "state.x", "state.y")
    assert hold_indices(("x", "y", "grip"), joined, 3, 5) == [3, 4, None]


def test_a_mode_for_one_part_is_refused_rather_than_ignored(tmp_path):
    from librobot.train.run import train_from_config

    config = _config(tmp_path, normalization={"action": "q01_q99", STATE: "mean_std", ENV: "min_max"})
    with pytest.raises(ConfigError, match=r"'observation\.environment_state' is a part of the policy's joined"):
        train_from_config(config, configure_logs=False)
