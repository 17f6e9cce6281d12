"""A policy's recommended execution (ACT's temporal ensembling) reaches every place that runs it:
the torch policy, a runtime with mode="auto", the servers' info, the client, and the ONNX export."""

import numpy as np
import pytest
from _serve_testlib import ClampRateFilter, LinearChunkPolicy
from test_export_helpers import build

from librobot.core.errors import ConfigError
from librobot.serve.runtime import PolicyRuntime, RuntimeConfig
from librobot.serve.service import PolicyService
from librobot.serve.torch_policy import TorchPolicy

pytestmark = pytest.mark.torch


def test_act_recommends_temporal_ensembling_only_when_its_config_says_so(tmp_path):
    assert TorchPolicy(build("act")).execution == {}  # off by default, as LeRobot's ACT
    folder = build("act", temporal_ensemble=True, temporal_ensemble_coeff=0.05).save_pretrained(tmp_path / "act")
    policy = TorchPolicy.from_pretrained(folder)  # the choice is part of the saved policy
    assert policy.execution == {"mode": "ensemble", "ensemble_coeff": 0.05}
    auto = RuntimeConfig.for_policy(policy, 10.0)
    assert (auto.mode, auto.ensemble_coeff) == ("ensemble", 0.05)
    assert RuntimeConfig.for_policy(policy, 10.0, "sync").mode == "sync"  # an explicit mode wins
    assert RuntimeConfig.for_policy(TorchPolicy(build("groot")), 10.0).mode == "sync"  # no preference
    with pytest.raises(ConfigError, match="mode must be 'auto' or one of"):
        RuntimeConfig.for_policy(policy, 10.0, "ensembled")
    with pytest.raises(ConfigError, match="temporal_ensemble must be true or false"):
        build("act", temporal_ensemble="yes")


def test_an_auto_runtime_runs_the_policy_every_step_and_commands_the_ensemble():
    class Recommending(LinearChunkPolicy):
        execution = {"mode": "ensemble", "ensemble_coeff": 0.3}

    policy = Recommending.random(state_dim=2, horizon=4, action_dim=2, seed=1)
    runtime = PolicyRuntime(policy, ClampRateFilter([-1e6] * 2, [1e6] * 2), RuntimeConfig.for_policy(policy, 10.0))
    rng = np.random.default_rng(5)
    observations = [{"observation.state": rng.normal(size=2).astype(np.float32)} for _ in range(6)]
    commanded = [runtime.step(o) for o in observations]
    assert runtime.stats.inferences == 6  # a chunk every step, not one per 4 steps
    chunks = [np.asarray(policy.predict_chunk(o), np.float64) for o in observations]
    for t in range(6):  # the chunks covering step t, oldest first, weighted exp(-m i)
        covering = [chunks[s][t - s] for s in range(max(0, t - 3), t + 1)]
        weights = np.exp(-0.3 * np.arange(len(covering)))
        np.testing.assert_allclose(commanded[t], np.average(covering, axis=0, weights=weights), rtol=1e-12)


def test_the_recommendation_reaches_the_servers_info_and_the_onnx_export(tmp_path):
    from librobot.serve.export import export_policy
    from librobot.serve.onnx_policy import OnnxPolicy
    from librobot.serve.sidecar import load_sidecar

    folder = build("act", temporal_ensemble=True).save_pretrained(tmp_path / "act")
    info = PolicyService(TorchPolicy.from_pretrained(folder)).info()
    assert info["execution"] == {"mode": "ensemble", "ensemble_coeff": 0.01}
    export = export_policy(folder, tmp_path / "export", tasks=["pick up the red cube"]).path
    assert load_sidecar(export)[0].execution == {"mode": "ensemble", "ensemble_coeff": 0.01}
    onnx = OnnxPolicy(export)
    assert onnx.execution == info["execution"] and RuntimeConfig.for_policy(onnx, 10.0).mode == "ensemble"
    plain = export_policy(build("act").save_pretrained(tmp_path / "plain"), tmp_path / "e2", tasks=["go"]).path
    assert load_sidecar(plain)[0].execution is None and PolicyService(OnnxPolicy(plain)).info()["execution"] == {}
