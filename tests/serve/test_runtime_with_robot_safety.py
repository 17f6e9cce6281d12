"""The runtime with librobot.robots' real safety layer (filter(action) on its own clock)."""

import numpy as np

from librobot.robots import create_robot
from librobot.robots.safety import SafetyLayer
from librobot.serve.clock import FakeClock
from librobot.serve.runtime import PolicyRuntime, RuntimeConfig


class Ramp:
    """Chunks that ramp the throttle far past its limit: the safety layer must clamp and rate-limit."""

    action_dim, chunk_size = 6, 4

    def predict_chunk(self, observation, task=None):
        base = float(observation["observation.state"][0])
        chunk = np.zeros((4, 6))
        chunk[:, 0] = base + 10.0 * np.arange(1, 5)
        return chunk

    def reset(self):
        pass


def test_runtime_routes_every_action_through_the_robots_safety_layer():
    robot = create_robot("wheel_loader")
    spec = robot.spec
    clock = FakeClock()
    layer = SafetyLayer(spec, initial=spec.safe_command(None), clock=clock.now)
    runtime = PolicyRuntime(Ramp(), layer, RuntimeConfig(control_hz=spec.control_hz, mode="sync"), clock=clock)
    previous = spec.safe_command(None)
    throttle = spec.action_space.index("throttle")
    for _ in range(12):
        action = runtime.step({"observation.state": np.zeros(22)})
        clock.advance(1.0 / spec.control_hz)
        assert spec.action_space.contains(action)
        assert abs(action[throttle] - previous[throttle]) <= spec.max_delta[throttle] + 1e-12
        previous = action
    assert action[throttle] == spec.action_space.high[throttle]  # reached the limit, never beyond
    assert layer.counts["clamp"] > 0 and layer.counts["rate_limit"] > 0
