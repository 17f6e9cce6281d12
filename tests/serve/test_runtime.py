"""The control-loop runtime on a simulated robot, in simulated time (FakeClock, no sleeps)."""

import math

import numpy as np
import pytest
from _serve_testlib import ClampRateFilter, ClockedPolicy, LinearChunkPolicy, MixtureFlowPolicy, PointRobot

from librobot.core.batch import OBS_STATE
from librobot.core.errors import ConfigError
from librobot.serve import FakeClock, PolicyRuntime, RuntimeConfig, SimulatedLatencyExecutor

DELTA = np.array([0.1, -0.2])


def open_filter(dim=2):
    return ClampRateFilter([-1e6] * dim, [1e6] * dim)


def test_sync_executes_n_action_steps_of_each_chunk_in_order():
    clock = FakeClock()
    policy = LinearChunkPolicy.ramp(2, DELTA, horizon=5)
    robot, safety = PointRobot(clock, [0.0, 0.0]), open_filter()
    runtime = PolicyRuntime(policy, safety, RuntimeConfig(control_hz=10, n_action_steps=3), clock=clock)
    stats = runtime.run(robot, 10)
    # chunk[k] = state + (k+1)δ and the robot's state is its last command: a ramp only if every chunk
    # is executed from its first action, in order, for exactly 3 steps.
    np.testing.assert_allclose(np.stack(robot.sent), [(k + 1) * DELTA for k in range(10)])
    assert policy.calls == 4  # steps 0, 3, 6, 9
    np.testing.assert_allclose(robot.times, [0.1 * k for k in range(10)], atol=1e-12)
    assert safety.calls == robot.times  # the safety layer saw every command, at its time
    assert stats.steps == 10 and stats.inferences == 4 and stats.overruns == 0


def test_temporal_ensembling_matches_a_hand_computed_reference():
    clock, m = FakeClock(), 0.5
    policy = LinearChunkPolicy.random(state_dim=1, horizon=3, action_dim=1, seed=4)
    runtime = PolicyRuntime(
        policy, open_filter(1), RuntimeConfig(control_hz=10, mode="ensemble", ensemble_coeff=m), clock=clock
    )
    states = [0.3, -1.2, 0.7, 2.0]
    actions = [runtime.step({OBS_STATE: np.array([s])})[0] for s in states]
    c = [policy.m[:, 0] * s + policy.b for s in states]  # chunk predicted at step t, c[t][k] for step t+k
    w1, w2 = math.exp(-m), math.exp(-2 * m)  # the oldest prediction weighs 1
    expected = [
        c[0][0],
        (c[0][1] + w1 * c[1][0]) / (1 + w1),
        (c[0][2] + w1 * c[1][1] + w2 * c[2][0]) / (1 + w1 + w2),
        (c[1][2] + w1 * c[2][1] + w2 * c[3][0]) / (1 + w1 + w2),  # c[0] has run out
    ]
    np.testing.assert_allclose(actions, expected, rtol=1e-12)
    assert policy.calls == 4


def test_async_inference_keeps_the_control_rate_when_inference_is_slower_than_a_period():
    period, latency, steps = 0.1, 0.25, 40  # inference takes 2.5 control periods
    # Synchronous: every chunk boundary stalls the loop for the whole inference.
    clock = FakeClock()
    robot = PointRobot(clock, [0.0, 0.0])
    sync = PolicyRuntime(
        ClockedPolicy(LinearChunkPolicy.ramp(2, DELTA, 10), clock, latency),
        open_filter(),
        RuntimeConfig(control_hz=10),
        clock=clock,
    )
    sync_stats = sync.run(robot, steps)
    assert sync_stats.overruns == 4  # one per chunk
    assert max(np.diff(robot.times)) == pytest.approx(period + latency)

    # Asynchronous: the next chunk is computed in the background while the current one executes.
    clock = FakeClock()
    robot = PointRobot(clock, [0.0, 0.0])
    policy = LinearChunkPolicy.ramp(2, DELTA, 10)
    runtime = PolicyRuntime(
        policy,
        open_filter(),
        RuntimeConfig(control_hz=10, mode="async", async_threshold=4),
        clock=clock,
        executor=SimulatedLatencyExecutor(clock, latency),
    )
    stats = runtime.run(robot, steps)
    # After the first (blocking) chunk, every tick is exactly on the 10 Hz grid.
    np.testing.assert_allclose(robot.times, [latency] + [0.3 + period * k for k in range(steps - 1)], atol=1e-9)
    assert stats.overruns == 1 and stats.starved_steps == 0
    assert stats.last_delay_steps == 3  # ready 0.25 s after the request: seen at the 3rd tick
    # Latency compensation: the 3 actions whose time passed during inference are dropped, so the
    # commands continue the ramp exactly instead of replaying old steps.
    np.testing.assert_allclose(np.stack(robot.sent), [(k + 1) * DELTA for k in range(steps)], atol=1e-12)
    assert stats.dropped_actions == 3 * (stats.inferences - 1)
    assert stats.inferences == policy.calls > 4


def test_async_with_too_low_a_threshold_starves_and_counts_it():
    clock = FakeClock()
    robot = PointRobot(clock, [0.0, 0.0])
    runtime = PolicyRuntime(
        LinearChunkPolicy.ramp(2, DELTA, 10),
        open_filter(),
        RuntimeConfig(control_hz=10, mode="async", async_threshold=1),  # request with 1 action left
        clock=clock,
        executor=SimulatedLatencyExecutor(clock, 0.25),
    )
    stats = runtime.run(robot, 30)
    # The plan runs dry 0.2 s after each request; the chunk comes at 0.25 s: those ticks wait 0.05 s
    # (late, but within the period, so not overruns).
    assert stats.starved_steps >= 2 and stats.overruns == 1
    off_grid = [t for t in robot.times[1:] if abs((t - 0.3) / 0.1 - round((t - 0.3) / 0.1)) > 1e-6]
    assert len(off_grid) == stats.starved_steps
    np.testing.assert_allclose(np.stack(robot.sent), [(k + 1) * DELTA for k in range(30)], atol=1e-12)


def test_async_with_a_real_background_thread_produces_the_same_commands():
    clock = FakeClock()
    robot = PointRobot(clock, [0.0, 0.0])
    with PolicyRuntime(
        LinearChunkPolicy.ramp(2, DELTA, 8), open_filter(), RuntimeConfig(control_hz=50, mode="async"), clock=clock
    ) as runtime:
        runtime.run(robot, 50)
    # Whenever the thread's chunk arrives, alignment by step index keeps the ramp exact.
    np.testing.assert_allclose(np.stack(robot.sent), [(k + 1) * DELTA for k in range(50)], atol=1e-12)


def _boundary_jumps(mode, seed):
    clock = FakeClock()
    robot = PointRobot(clock, [0.0, 0.0])
    runtime = PolicyRuntime(
        MixtureFlowPolicy(horizon=16, seed=seed),
        open_filter(),
        RuntimeConfig(control_hz=10, mode=mode, async_threshold=8),
        clock=clock,
        executor=SimulatedLatencyExecutor(clock, 0.25),
    )
    runtime.run(robot, 40)
    sent = np.stack(robot.sent)
    return np.abs(np.diff(sent, axis=0)).max(), np.abs(np.diff(sent, n=3, axis=0)).max(), runtime.stats


def test_real_time_chunking_gives_smoother_chunk_boundaries_than_naive_switching():
    seeds = range(12)
    naive = [_boundary_jumps("async", seed) for seed in seeds]
    rtc = [_boundary_jumps("rtc", seed) for seed in seeds]
    # Each episode's largest step-to-step change |Δa| and third difference (jerk). Nominal motion
    # moves ≤ ~0.11 per step; naive switching jumps between the "above" and "below" plans
    # (|Δy| up to 2·bump), RTC's chunks continue the actions already committed.
    naive_step, rtc_step = np.array([n[0] for n in naive]), np.array([r[0] for r in rtc])
    naive_jerk, rtc_jerk = np.array([n[1] for n in naive]), np.array([r[1] for r in rtc])
    assert (naive_step > 1.0).sum() >= 9
    assert (rtc_step > 0.5).sum() == 0 and np.median(rtc_step) < 0.12
    assert np.median(rtc_jerk) < np.median(naive_jerk) / 20
    assert all(r[2].starved_steps == 0 and r[2].inferences >= 4 for r in rtc)


def test_the_safety_layer_is_always_between_policy_and_robot():
    clock = FakeClock()
    robot = PointRobot(clock, [0.0, 0.0])
    safety = ClampRateFilter([-0.25, -0.25], [0.25, 0.25], max_delta=0.05)
    runtime = PolicyRuntime(LinearChunkPolicy.ramp(2, DELTA, 5), safety, RuntimeConfig(control_hz=10), clock=clock)
    runtime.run(robot, 12)
    sent = np.stack(robot.sent)
    assert np.abs(sent).max() <= 0.25 + 1e-12 and np.abs(np.diff(sent, axis=0)).max() <= 0.05 + 1e-12
    assert len(safety.calls) == 12
    with pytest.raises(ConfigError, match="safety layer"):
        PolicyRuntime(LinearChunkPolicy.ramp(2, DELTA, 5), None, RuntimeConfig(control_hz=10))
    with pytest.raises(ConfigError, match=r"filter\(action, now\)"):
        PolicyRuntime(LinearChunkPolicy.ramp(2, DELTA, 5), object(), RuntimeConfig(control_hz=10))


class _Failing(LinearChunkPolicy):
    def __init__(self, fail_from_call):
        m = LinearChunkPolicy.ramp(2, DELTA, 6)
        super().__init__(m.m, m.b, 6, 2)
        self.fail_from_call = fail_from_call

    def predict_chunk(self, observation, task=None):
        if self.calls + 1 >= self.fail_from_call:
            self.calls += 1
            raise RuntimeError("model crashed")
        return super().predict_chunk(observation, task)


def test_a_failing_policy_stops_the_robot_through_the_safety_layer():
    clock = FakeClock()
    robot = PointRobot(clock, [0.0, 0.0])
    safety = open_filter()
    runtime = PolicyRuntime(_Failing(fail_from_call=2), safety, RuntimeConfig(control_hz=10), clock=clock)
    with pytest.raises(RuntimeError, match="model crashed"):
        runtime.run(robot, 20)
    # 6 actions of the first chunk, then the safe action (hold position), which went through the filter.
    assert len(robot.sent) == 7 and len(safety.calls) == 7
    np.testing.assert_allclose(robot.sent[-1], robot.sent[-2])


def test_async_survives_a_failed_background_inference_while_actions_remain():
    clock = FakeClock()
    robot = PointRobot(clock, [0.0, 0.0])
    policy = _Failing(fail_from_call=2)  # the first chunk works, every later call fails
    runtime = PolicyRuntime(
        policy,
        open_filter(),
        RuntimeConfig(control_hz=10, mode="async", async_threshold=3),
        clock=clock,
        executor=SimulatedLatencyExecutor(clock, 0.1),
    )
    with pytest.raises(RuntimeError, match="model crashed"):
        runtime.run(robot, 20)
    assert runtime.stats.inference_errors >= 2  # retried while the plan lasted
    assert len(robot.sent) == 7  # the whole first chunk, then the safe action


def test_reset_and_configuration_errors():
    clock = FakeClock()
    policy, safety = LinearChunkPolicy.ramp(2, DELTA, 5), open_filter()
    runtime = PolicyRuntime(policy, safety, RuntimeConfig(control_hz=10, n_action_steps=5), clock=clock)
    runtime.step({OBS_STATE: np.zeros(2)})
    runtime.reset(task="reach")
    assert runtime.task == "reach" and safety.resets == 1 and runtime.stats.steps == 0
    np.testing.assert_allclose(runtime.step({OBS_STATE: np.ones(2)}), 1 + DELTA)  # a fresh chunk
    with pytest.raises(ConfigError, match="RealTimeChunkingPolicy"):
        PolicyRuntime(policy, safety, RuntimeConfig(control_hz=10, mode="rtc"))
    with pytest.raises(ConfigError, match="n_action_steps"):
        PolicyRuntime(policy, safety, RuntimeConfig(control_hz=10, n_action_steps=6))
    with pytest.raises(ConfigError, match="mode"):
        PolicyRuntime(policy, safety, RuntimeConfig(control_hz=10, mode="fast"))
    with pytest.raises(ConfigError, match="control_hz"):
        PolicyRuntime(policy, safety, RuntimeConfig(control_hz=0))
