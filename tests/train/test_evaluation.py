"""Evaluation: offline errors per dimension, closed-loop success with Wilson intervals, chunked
execution through the serve runtime, rollout videos and the HTML report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from librobot.core.errors import ConfigError
from librobot.core.interfaces import PolicyInterface
from librobot.train.evaluation.closed_loop import evaluate_closed_loop, summary_lines, wilson_interval
from librobot.train.evaluation.report import write_report

pytestmark = pytest.mark.torch


class ChunkPolicy(PolicyInterface):
    """Meta-World's 4-D actions, chunks of ``chunk`` steps, counting its calls and the tasks it got."""

    def __init__(self, chunk: int) -> None:
        self.chunk, self.calls, self.tasks = chunk, 0, []

    @property
    def action_dim(self) -> int:
        return 4

    @property
    def chunk_size(self) -> int:
        return self.chunk


class MetaWorldStatePolicy(ChunkPolicy):
    """Meta-World's scripted policy fed the 39-D state observation (which holds everything it reads):
    a policy that succeeds, seen only through observations, as a trained one would be."""

    def __init__(self, env_id: str, chunk: int) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        super().__init__(chunk)
        self.policy = ENV_POLICY_MAP[env_id]()

    def predict_chunk(self, observation, task=None):
        self.calls += 1
        action = np.clip(self.policy.get_action(np.asarray(observation["observation.state"], np.float64)), -1, 1)
        return np.repeat(action[None].astype(np.float32), self.chunk, axis=0)


class ConstantPolicy(ChunkPolicy):
    def predict_chunk(self, observation, task=None):
        self.calls += 1
        self.tasks.append(task)
        return np.zeros((self.chunk, 4), np.float32)


def test_wilson_interval_matches_the_closed_form():
    lo, hi = wilson_interval(0, 2)
    assert lo == 0.0 and hi == pytest.approx(0.6576, abs=1e-4)
    lo, hi = wilson_interval(46, 50)  # 0.92: the textbook interval is [0.8116, 0.9685]
    assert (lo, hi) == pytest.approx((0.8116, 0.9685), abs=1e-4)
    lo, hi = wilson_interval(50, 50)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.9287, abs=1e-4)


def test_a_policy_that_solves_reach_scores_full_success_with_short_episodes(tmp_path):
    policy = MetaWorldStatePolicy("reach-v3", chunk=1)
    report = evaluate_closed_loop(policy, "metaworld-reach", 3, num_envs=3, env_kwargs={"render": False})
    summary = report.per_env()["metaworld-reach"]
    assert summary.episodes == 3 and report.success_rate == 1.0
    assert summary.mean_length < 200  # succeeds early, not at the time limit
    assert report.ci95 == pytest.approx(wilson_interval(3, 3))
    assert policy.calls == sum(r.length for r in report.results)  # one inference per step with chunk 1
    write_report(report, tmp_path)  # 100% success: the chart's error bars stay non-negative
    assert (tmp_path / "success.png").stat().st_size > 1000


def test_chunks_run_n_action_steps_before_the_next_inference_and_failures_run_to_max_steps(tmp_path):
    policy = ConstantPolicy(chunk=8)
    report = evaluate_closed_loop(
        policy, ["metaworld-reach", "metaworld-button-press"], 2, num_envs=2, n_action_steps=4, max_steps=20,
        env_kwargs={"render": False},
    )  # fmt: skip
    assert report.success_rate == 0.0 and all(r.length == 20 for r in report.results)
    assert policy.calls == 4 * math.ceil(20 / 4)  # 4 episodes, a new chunk every 4 steps
    assert len(set(policy.tasks)) == 2 and all(isinstance(t, str) and t for t in policy.tasks)  # each env's instruction
    assert set(report.per_env()) == {"metaworld-reach", "metaworld-button-press"}


def test_a_policy_that_recommends_ensembling_is_evaluated_with_a_chunk_every_step():
    class Ensembling(ConstantPolicy):
        execution = {"mode": "ensemble", "ensemble_coeff": 0.01}  # what an ACT policy with temporal_ensemble says

    def run(mode):
        policy = Ensembling(chunk=8)
        kw = dict(num_envs=2, n_action_steps=4, max_steps=12, env_kwargs={"render": False}, mode=mode)
        return policy, evaluate_closed_loop(policy, "metaworld-reach", 2, **kw)

    policy, report = run("auto")
    assert report.mode == "ensemble" and policy.calls == 2 * 12  # every step of both episodes
    assert "mode ensemble" in summary_lines(report)[-1]
    policy, report = run("sync")  # asked for explicitly: a chunk every 4 steps
    assert report.mode == "sync" and policy.calls == 2 * 3
    with pytest.raises(ConfigError, match="runs mode 'sync' or 'ensemble'"):
        run("async")


def test_videos_and_the_report_are_written(tmp_path):
    av = pytest.importorskip("av")
    report = evaluate_closed_loop(
        ConstantPolicy(chunk=4), "metaworld-reach", 2, num_envs=2, max_steps=12,
        env_kwargs={"render": True, "image_size": 48}, videos_per_env=1, video_dir=tmp_path / "videos",
    )  # fmt: skip
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1
    with av.open(str(videos[0])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) >= 12 and frames[0].std() > 1.0  # a rendered scene, not a blank frame
    page = write_report(report, tmp_path / "report", title="eval test", extra={"framework": "constant"})
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["framework"] == "constant" and data["success_rate"] == 0.0
    assert (tmp_path / "report" / "success.png").stat().st_size > 1000
    assert "eval test" in page.read_text() and "metaworld-reach" in page.read_text()


def test_environments_are_closed_once_no_queued_episode_needs_them(monkeypatch):
    """One open environment per slot at a time, whatever the number of tasks: rendering
    environments hold ~160 MB each, and keeping every slot's env of every task ran out of memory."""
    import librobot.robots.sim.api as sim_api

    real_make_env, opened, closed = sim_api.make_env, [], []

    def tracking_make_env(name, **kwargs):
        env = real_make_env(name, **kwargs)
        real_close = env.close
        opened.append(name)

        def close():
            closed.append(name)
            real_close()

        env.close = close
        return env

    monkeypatch.setattr(sim_api, "make_env", tracking_make_env)
    open_counts = []
    policy = ConstantPolicy(chunk=4)
    original = policy.predict_chunk

    def counting(observation, task=None):
        open_counts.append(len(opened) - len(closed))
        return original(observation, task)

    policy.predict_chunk = counting
    tasks = ["metaworld-reach", "metaworld-button-press", "metaworld-drawer-close"]
    report = evaluate_closed_loop(policy, tasks, 3, num_envs=2, max_steps=8, env_kwargs={"render": False})
    assert len(report.results) == 9 and set(report.per_env()) == set(tasks)
    assert sorted(opened) == sorted(closed)  # everything closed at the end
    assert opened.count("metaworld-reach") == 2 and len(opened) == 6  # each slot made one env per task
    assert max(open_counts) <= 2  # never more than one per slot


def test_an_evaluation_that_died_resumes_from_its_episode_log(tmp_path):
    log_path = tmp_path / "episodes.jsonl"

    def run(resume, **overrides):
        policy = MetaWorldStatePolicy("reach-v3", chunk=1)
        options = dict(num_envs=2, env_kwargs={"render": False}, episode_log=log_path, resume=resume, **overrides)
        return policy, evaluate_closed_loop(policy, "metaworld-reach", 4, **options)

    _, full = run(resume=False)
    lines = log_path.read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["settings"]["episodes"] == 4
    logged = [json.loads(line) for line in lines[1:]]
    assert [e["totals"]["env_steps"] for e in logged] == sorted(e["totals"]["env_steps"] for e in logged)
    # died after two episodes, mid-way through writing the third line
    log_path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    policy, resumed = run(resume=True)
    assert resumed.resumed_episodes == 2 and len(resumed.results) == 4
    again = {(e["episode"]["env"], e["episode"]["seed"]) for e in logged[2:]}
    assert policy.calls == sum(r.length for r in resumed.results if (r.env, r.seed) in again)  # only those ran
    assert [(r.seed, r.success, r.length) for r in resumed.results] == [
        (r.seed, r.success, r.length) for r in full.results
    ]
    assert resumed.env_steps >= logged[1]["totals"]["env_steps"] + policy.calls
    assert resumed.seconds > logged[1]["totals"]["seconds"]
    with pytest.raises(ConfigError, match=r"other settings \(n_action_steps differ\); delete it to start over"):
        run(resume=True, n_action_steps=2)
    policy, fresh = run(resume=False)  # without resume an old log is replaced, not continued
    assert fresh.resumed_episodes == 0 and policy.calls == sum(r.length for r in fresh.results)
    assert len(log_path.read_text().splitlines()) == 5


def test_bad_arguments_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="episodes >= 1"):
        evaluate_closed_loop(ConstantPolicy(4), "metaworld-reach", 0)
    with pytest.raises(ConfigError, match="video_dir"):
        evaluate_closed_loop(ConstantPolicy(4), "metaworld-reach", 1, videos_per_env=1)


def test_offline_errors_are_per_dimension_in_dataset_units():
    import torch

    from librobot.core import batch as B
    from librobot.train.evaluation.offline import evaluate_offline

    rng = np.random.default_rng(0)
    actions = torch.from_numpy(rng.standard_normal((10, 5, 3)).astype(np.float32))
    pad = torch.zeros(10, 5, dtype=torch.bool)
    pad[:, 4] = True  # the last step is padding: its (large) error must not count
    dataset = [{B.ACTION: actions[i], B.ACTION_IS_PAD: pad[i], B.OBS_STATE: torch.zeros(2)} for i in range(10)]
    offset = torch.tensor([0.5, -1.0, 2.0])

    class Shifted:
        def predict_action(self, batch):
            out = batch[B.ACTION] + offset
            out[:, 4] += 100.0
            return out

    metrics = evaluate_offline(Shifted(), dataset, batch_size=4)
    assert metrics["samples"] == 10
    assert metrics["mse_per_dim"] == pytest.approx([0.25, 1.0, 4.0], rel=1e-5)
    assert metrics["l1_per_dim"] == pytest.approx([0.5, 1.0, 2.0], rel=1e-5)
    assert metrics["mse"] == pytest.approx(5.25 / 3, rel=1e-5)


class HistoryPolicy(MetaWorldStatePolicy):
    """Reads a window of two states (obs_horizon = 2), acts on the latest, batches requests."""

    @property
    def obs_horizon(self) -> int:
        return 2

    def predict_chunks(self, observations, tasks=None):
        states = np.asarray(observations["observation.state"])
        self.windows.append(states.copy())
        return np.stack([self.predict_chunk({"observation.state": s[-1]}) for s in states])


def test_policies_with_an_observation_history_get_their_windows_in_closed_loop():
    policy = HistoryPolicy("reach-v3", chunk=4)
    policy.windows = []
    report = evaluate_closed_loop(
        policy, "metaworld-reach", 2, num_envs=2, n_action_steps=2, env_kwargs={"render": False}
    )
    assert report.success_rate == 1.0  # acting on the latest frame of each window still solves reach
    first, later = policy.windows[0], policy.windows[1]
    assert first.shape == (2, 2, 39) and later.shape == (2, 2, 39)
    np.testing.assert_array_equal(first[:, 0], first[:, 1])  # episode start: the first frame repeated
    assert np.abs(later[:, 1] - later[:, 0]).max() > 0  # then two consecutive, different frames


def _offline_store(path):
    """Two episodes, state (x, y), action (x, y, grip): absolute targets and a delta element."""
    from librobot.data.store import EpisodeWriter

    rng = np.random.default_rng(3)
    episodes = []
    with EpisodeWriter(path, fps=10.0, names={"observation.state": ("x", "y"), "action": ("x", "y", "grip")}) as w:
        for length in (6, 4):
            state = rng.normal(0, 1, (length, 2)).astype(np.float32)
            action = rng.normal(0, 1, (length, 3)).astype(np.float32)
            w.add_episode({"observation.state": state, "action": action}, task="t")
            episodes.append((state, action))
    return episodes


def _reference_l1(episodes, horizon, chunk_of):
    """Per-dimension L1 over valid steps of frames t >= 1, computed frame by frame in float64."""
    total, count = np.zeros(3), np.zeros(3)
    for state, action in episodes:
        for t in range(1, len(action)):
            steps = range(t, min(t + horizon, len(action)))
            predicted = chunk_of(state, action, t)
            for k, s in enumerate(steps):
                total += np.abs(predicted[k] - action[s].astype(np.float64))
                count += 1
    return total / count


def test_offline_baselines_and_verdict_on_a_synthetic_dataset(tmp_path):
    import torch

    from librobot.core import batch as B
    from librobot.data.datasets import store_dataset
    from librobot.train.evaluation.offline import evaluate_offline, hold_indices, with_previous_action

    episodes = _offline_store(tmp_path / "store")
    horizon = 3
    dataset = with_previous_action(
        lambda **kw: store_dataset(tmp_path / "store", action_horizon=horizon, **kw), horizon
    )
    features = dataset.dataset.storage_features
    hold = hold_indices(features[B.ACTION].names, features[B.OBS_STATE].names, 3, 2)
    assert hold == [0, 1, None]  # x, y hold the state; grip (no state element) holds with 0

    class Noisy:  # the truth plus a fixed offset: clearly better than both baselines
        def predict_action(self, batch):
            return batch[B.ACTION] + torch.tensor([0.05, -0.05, 0.1])

    metrics = evaluate_offline(Noisy(), dataset, batch_size=4, hold=hold)
    assert metrics["samples"] == 5 + 3  # every frame but each episode's first
    assert metrics["l1_per_dim"] == pytest.approx([0.05, 0.05, 0.1], rel=1e-5)
    hold_ref = _reference_l1(episodes, horizon, lambda s, a, t: [np.r_[s[t].astype(np.float64), 0.0]] * horizon)
    repeat_ref = _reference_l1(episodes, horizon, lambda s, a, t: [a[t - 1].astype(np.float64)] * horizon)
    assert metrics["baselines"]["hold"]["l1_per_dim"] == pytest.approx(hold_ref, rel=1e-5)
    assert metrics["baselines"]["repeat_last"]["l1_per_dim"] == pytest.approx(repeat_ref, rel=1e-5)
    assert hold_ref.min() > 0.3 and repeat_ref.min() > 0.3  # the baselines are far from the truth here
    assert metrics["verdict"]["learned"] is True

    class RepeatsItself:  # a policy that learned only to repeat the previous action
        def predict_action(self, batch):
            return batch["action.previous"].unsqueeze(1).expand_as(batch[B.ACTION]).clone()

    lazy = evaluate_offline(RepeatsItself(), dataset, batch_size=4, hold=hold)
    assert lazy["l1"] == pytest.approx(lazy["baselines"]["repeat_last"]["l1"], rel=1e-6)
    assert lazy["verdict"]["learned"] is False and "not clearly better than" in lazy["verdict"]["text"]


def test_pusht_episodes_report_their_best_reward_and_coverage():
    """PushT's score besides success: the best coverage of the target in each episode (and reward)."""
    from librobot.robots.sim.api import make_env

    class HoldStill(ChunkPolicy):  # pushes nothing: the coverage stays the initial one
        @property
        def action_dim(self):
            return 2

        def predict_chunk(self, observation, task=None):
            return np.repeat(np.asarray(observation["observation.state"], np.float32)[None], self.chunk, axis=0)

    report = evaluate_closed_loop(HoldStill(4), "pusht", 2, num_envs=2, max_steps=6, env_kwargs={"render": False})
    env = make_env("pusht", render=False)
    for result in report.results:
        env.reset(seed=result.seed)
        start = float(env.inner._get_coverage())
        assert result.max_coverage == pytest.approx(start, abs=1e-6) and 0 <= start < 0.95
        assert result.max_reward == pytest.approx(start / 0.95, abs=1e-6)
    env.close()
    summary = report.per_env()["pusht"]
    assert summary.mean_max_coverage == pytest.approx(np.mean([r.max_coverage for r in report.results]))
    assert "mean max coverage" in summary_lines(report)[0]
