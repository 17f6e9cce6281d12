"""Policies trained on windows of T_obs frames get the same windows at run time: the runtime keeps
the history (every tick, inference or not), pads the episode start like the training windows, and
forgets it on reset; TorchPolicy feeds the windows to the model."""

import numpy as np
import pytest
from _serve_testlib import ClampRateFilter, PointRobot

from librobot.core.batch import OBS_STATE
from librobot.core.errors import ConfigError, SpecError
from librobot.core.interfaces import PolicyInterface
from librobot.serve import FakeClock, PolicyRuntime, RuntimeConfig
from librobot.serve.history import ObservationHistory


class WindowRecorder(PolicyInterface):
    """Records each request; its chunk moves the robot by +1 per step so states are distinct."""

    def __init__(self, obs_horizon: int, horizon: int = 3) -> None:
        self._obs_horizon, self.h = obs_horizon, horizon
        self.requests: list[np.ndarray] = []

    @property
    def action_dim(self) -> int:
        return 1

    @property
    def chunk_size(self) -> int:
        return self.h

    @property
    def obs_horizon(self) -> int:
        return self._obs_horizon

    def predict_chunk(self, observation, task=None):
        state = np.asarray(observation[OBS_STATE])
        self.requests.append(state.copy())
        return state[-1] + np.arange(1, self.h + 1, dtype=np.float64)[:, None]


def test_window_pads_the_episode_start_and_keeps_the_latest_frames():
    history = ObservationHistory(3)
    frames = [{OBS_STATE: np.array([float(t), -t]), "task": "x"} for t in range(5)]
    first = history.window(frames[0])
    np.testing.assert_array_equal(first[OBS_STATE], [[0, 0], [0, 0], [0, 0]])
    assert first["task"] == "x"
    peek = history.window(frames[1], commit=False)
    np.testing.assert_array_equal(peek[OBS_STATE][:, 0], [0, 0, 1])
    np.testing.assert_array_equal(history.window(frames[1])[OBS_STATE][:, 0], [0, 0, 1])  # the peek left no trace
    for t in (2, 3, 4):
        out = history.window(frames[t])
    np.testing.assert_array_equal(out[OBS_STATE], [[2, -2], [3, -3], [4, -4]])
    history.reset()
    np.testing.assert_array_equal(history.window(frames[4])[OBS_STATE][:, 0], [4, 4, 4])


def test_window_copies_frames_and_rejects_changing_shapes():
    history = ObservationHistory(2)
    buffer = np.array([1.0, 2.0])
    history.window({OBS_STATE: buffer})
    buffer[:] = 9.0  # a driver reusing its buffer must not rewrite the past
    np.testing.assert_array_equal(history.window({OBS_STATE: buffer})[OBS_STATE], [[1, 2], [9, 9]])
    with pytest.raises(SpecError, match="changed within the episode"):
        history.window({OBS_STATE: np.zeros(3)})
    with pytest.raises(ConfigError, match="steps >= 1"):
        ObservationHistory(0)


def test_runtime_gives_the_policy_its_training_window_every_inference():
    clock = FakeClock()
    policy = WindowRecorder(obs_horizon=2, horizon=3)
    robot = PointRobot(clock, [0.0])
    runtime = PolicyRuntime(policy, ClampRateFilter([-1e6], [1e6]), RuntimeConfig(control_hz=10), clock=clock)
    runtime.run(robot, 7)
    # the robot's state is its last command: 0, then 1, 2, 3, ...; inference at ticks 0, 3, 6
    assert [r.shape for r in policy.requests] == [(2, 1)] * 3
    np.testing.assert_array_equal(np.stack(policy.requests)[..., 0], [[0, 0], [2, 3], [5, 6]])
    assert runtime.policy_input({OBS_STATE: np.array([7.0])})[OBS_STATE][:, 0].tolist() == [6, 7]
    runtime.reset()
    runtime.run(robot, 1)
    np.testing.assert_array_equal(policy.requests[-1][:, 0], [7, 7])  # a new episode starts padded


def test_single_frame_policies_get_observations_unchanged():
    clock = FakeClock()
    policy = WindowRecorder(obs_horizon=1)
    runtime = PolicyRuntime(policy, ClampRateFilter([-1e6], [1e6]), RuntimeConfig(control_hz=10), clock=clock)
    runtime.run(PointRobot(clock, [0.5]), 1)
    assert runtime.history is None and policy.requests[0].shape == (1,)


def test_torch_policy_feeds_history_windows_to_the_model():
    torch = pytest.importorskip("torch")
    from test_export_helpers import build

    from librobot.serve.torch_policy import TorchPolicy

    model = build("robovlms", n_obs_steps=2)
    policy = TorchPolicy(model, task="reach the goal")
    assert policy.obs_horizon == 2
    rng = np.random.default_rng(1)
    states = rng.normal(size=(3, 2, 4)).astype(np.float32)
    images = rng.integers(0, 256, size=(3, 2, 16, 16, 3), dtype=np.uint8)  # [N, T, H, W, C]
    got = policy.predict_chunks({OBS_STATE: states, "observation.images.top": images}, ["reach the goal"] * 3)
    frames = torch.from_numpy(images).permute(0, 1, 4, 2, 3).float() / 255
    want = model.predict_action({"top": frames}, ["reach the goal"] * 3, torch.from_numpy(states))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    # the older frame matters: the LSTM history reads both
    older = states.copy()
    older[:, 0] += 1.0
    changed = policy.predict_chunks({OBS_STATE: older, "observation.images.top": images}, ["reach the goal"] * 3)
    assert np.abs(changed - got).max() > 1e-4
