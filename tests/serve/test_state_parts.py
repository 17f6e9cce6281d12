"""A policy whose state joins several observation vectors (``state_parts``): the torch policy, the
runtime, the servers and the ONNX export take the parts as separate keys (or the joined state)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _serve_testlib import ClampRateFilter

from librobot.core.errors import SpecError
from librobot.serve.errors import RequestError, SidecarError
from librobot.serve.service import PolicyService
from librobot.serve.wire import decode_msgpack, encode_request, parse_request

pytestmark = pytest.mark.torch

STATE, ENV, CAMERA = "observation.state", "observation.environment_state", "observation.images.image"
PARTS = [[ENV, 3], [STATE, 2]]  # the environment first: a wrong order cannot pass unnoticed
TASK, A, T_OBS = "push the T", 2, 2
TINY_VLM = dict(
    image_size=16, patch_size=8, tokens_per_view=4, dim=32, depth=1, heads=2, kv_heads=1, max_text_tokens=16
)
ACTION_SCALE = np.array([2.0, 0.5])


def _build(parts=PARTS):
    import torch

    from librobot.models import create_vla, create_vlm

    torch.manual_seed(0)
    model = create_vla(
        "groot", vlm=create_vlm("librobot-tiny-vlm", **TINY_VLM), action_dim=A, state_dim=5, state_parts=parts,
        horizon=4, n_obs_steps=T_OBS, cameras=["image"], hidden_dim=32,
        head={"num_inference_steps": 3, "hidden_dim": 32, "depth": 1, "num_heads": 2},
    )  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    state_stats = {
        "mode": "mean_std",
        "clamp": False,
        "center": [50.0] * 3 + [0.0] * 2,
        "scale": [20.0] * 3 + [1.0] * 2,
    }
    action_stats = {"mode": "min_max", "clamp": False, "center": [0.5, -1.0], "scale": ACTION_SCALE.tolist()}
    model.set_normalization({"format": "librobot-normalizer", "features": {"action": action_stats, STATE: state_stats}})
    return model.eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _build().save_pretrained(tmp_path_factory.mktemp("parts") / "policy")


@pytest.fixture(scope="module")
def policy(folder):
    from librobot.serve.torch_policy import TorchPolicy

    return TorchPolicy.from_pretrained(folder, task=TASK)


def _parts(seed: int) -> dict[str, np.ndarray]:
    """One windowed observation as a robot sends its parts: [T_obs, width] each, and the camera."""
    rng = np.random.default_rng(seed)
    return {
        STATE: rng.normal(0.0, 1.0, (T_OBS, 2)).astype(np.float32),
        ENV: rng.normal(50.0, 20.0, (T_OBS, 3)).astype(np.float32),
        CAMERA: rng.random((T_OBS, 3, 16, 16), dtype=np.float32),
    }


def _joined(obs: dict[str, np.ndarray], keys=(ENV, STATE)) -> dict[str, np.ndarray]:
    return {STATE: np.concatenate([obs[k] for k in keys], axis=-1), CAMERA: obs[CAMERA]}


def _noise(seed: int = 9) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((4, A)).astype(np.float32)


def test_the_policy_folder_records_its_parts_and_one_without_them_is_as_before(folder, tmp_path):
    assert json.loads((folder / "config.json").read_text())["config"]["state_parts"] == PARTS
    from librobot.serve.torch_policy import TorchPolicy

    plain = _build(parts=None).save_pretrained(tmp_path / "plain")
    assert "state_parts" not in json.loads((plain / "config.json").read_text())["config"]
    obs = _parts(1)
    assert TorchPolicy.from_pretrained(plain).state_parts == ()
    TorchPolicy.from_pretrained(plain).predict_chunk(_joined(obs), TASK)  # observation.state as it is


def test_torch_policy_takes_the_parts_as_separate_keys(policy):
    assert [(p.key, p.width) for p in policy.state_parts] == [(ENV, 3), (STATE, 2)]
    obs, noise = _parts(2), _noise()
    parts = policy.predict_chunk(obs, TASK, noise=noise)
    np.testing.assert_array_equal(parts, policy.predict_chunk(_joined(obs), TASK, noise=noise))
    swapped = policy.predict_chunk(_joined(obs, keys=(STATE, ENV)), TASK, noise=noise)
    assert np.abs(parts - swapped).max() > 1e-3  # the order matters, so agreeing above means something
    lerobot = {**{k: v for k, v in obs.items() if k != CAMERA}, "observation.image": obs[CAMERA]}
    np.testing.assert_array_equal(parts, policy.predict_chunk(lerobot, TASK, noise=noise))  # LeRobot's camera key
    batch = [_parts(s) for s in (3, 4)]
    stacked = {k: np.stack([b[k] for b in batch]) for k in batch[0]}
    chunks = policy.predict_chunks(stacked, [TASK, TASK], noise=np.stack([noise, noise]))
    for b, chunk in zip(batch, chunks):
        np.testing.assert_allclose(chunk, policy.predict_chunk(b, TASK, noise=noise), atol=1e-5)


def test_a_missing_or_misshapen_part_is_named_with_its_width(policy):
    obs = _parts(5)
    with pytest.raises(
        SpecError, match=r"'observation\.environment_state': missing \(3 values\).*observation\.state \[2\]"
    ):
        policy.predict_chunk({STATE: obs[STATE], CAMERA: obs[CAMERA]}, TASK)
    with pytest.raises(
        SpecError, match=r"'observation\.environment_state': expected 3 values on the last axis, got shape \[2, 4\]"
    ):
        policy.predict_chunk({**obs, ENV: np.zeros((T_OBS, 4), np.float32)}, TASK)


def test_the_runtime_windows_each_part_and_the_policy_joins_them(policy):
    from librobot.serve import FakeClock, PolicyRuntime, RuntimeConfig

    def actions(frames):
        runtime = PolicyRuntime(
            policy, ClampRateFilter([-1e6] * A, [1e6] * A), RuntimeConfig(control_hz=10), clock=FakeClock()
        )
        runtime.reset(TASK)
        return np.stack([runtime.step(f) for f in frames])

    frames = [{k: v[-1] for k, v in _parts(s).items()} for s in (6, 7, 8)]  # single frames, as sensors give them
    joined = [{STATE: np.concatenate([f[ENV], f[STATE]]), CAMERA: f[CAMERA]} for f in frames]
    np.testing.assert_array_equal(actions(frames), actions(joined))


def _request(service, obs):
    return service.validate(parse_request(decode_msgpack(encode_request(obs, TASK), 1 << 20)))


def test_the_service_joins_the_parts_and_names_a_missing_one(policy):
    service = PolicyService(policy)
    try:
        assert service.info()["state_parts"] == PARTS
        obs = _parts(10)
        checked = _request(service, obs)
        assert set(checked.observation) == {STATE, CAMERA} and checked.observation[STATE].shape == (T_OBS, 5)
        np.testing.assert_array_equal(service.run(checked).action, service.run(_request(service, _joined(obs))).action)
        with pytest.raises(RequestError, match=r"missing \(3 values\)") as info:
            _request(service, {STATE: obs[STATE], CAMERA: obs[CAMERA]})
        assert info.value.field == ENV and info.value.status == 422
    finally:
        service.close()


def test_rest_and_grpc_clients_send_the_parts_separately(policy):
    from librobot.serve.client import GrpcPolicyClient, RestPolicyClient
    from librobot.serve.errors import RemotePolicyError
    from librobot.serve.grpc_server import GrpcServer
    from librobot.serve.rest import RestServer

    service = PolicyService(policy)
    rest, grpc_server = RestServer(service, port=0).start(), GrpcServer(service, port=0).start()
    try:
        obs = _parts(11)
        want = policy.predict_chunk(obs, TASK)  # no noise given: the policy's seeded draw, as on the server
        for client in (RestPolicyClient(rest.url), GrpcPolicyClient(grpc_server.target)):
            assert client.info["state_parts"] == PARTS
            np.testing.assert_allclose(client.predict_chunk(obs, TASK), want, atol=1e-6)
            with pytest.raises(RemotePolicyError, match=r"missing \(3 values\)") as info:
                client.predict_chunk({STATE: obs[STATE], CAMERA: obs[CAMERA]}, TASK)
            assert info.value.field == ENV
    finally:
        rest.stop()
        grpc_server.stop()
        service.close()


@pytest.fixture(scope="module")
def exported(folder, tmp_path_factory):
    from librobot.serve.export import export_policy

    return export_policy(folder, tmp_path_factory.mktemp("export") / "onnx", tasks=[TASK]).path


def test_the_onnx_export_takes_the_parts_and_matches_torch(exported, policy):
    from librobot.serve.onnx_policy import OnnxPolicy

    sidecar = json.loads((exported / "policy.json").read_text())
    assert sidecar["state_parts"] == PARTS
    onnx = OnnxPolicy(exported)
    assert [(p.key, p.width) for p in onnx.state_parts] == [(ENV, 3), (STATE, 2)]
    assert onnx.input_features[STATE].shape == (T_OBS, 5)  # the graph takes the joined state
    for seed in (12, 13, 14):
        obs, noise = _parts(seed), _noise(seed)
        got = onnx.predict_chunk(obs, TASK, noise=noise)
        np.testing.assert_array_equal(got, onnx.predict_chunk(_joined(obs), TASK, noise=noise))
        ref = policy.predict_chunk(obs, TASK, noise=noise)
        assert np.max(np.abs(got - ref) / ACTION_SCALE) <= 1e-4
    with pytest.raises(SpecError, match=r"'observation\.environment_state': missing \(3 values\)"):
        onnx.predict_chunk({STATE: obs[STATE], CAMERA: obs[CAMERA]}, TASK, noise=noise)
    service = PolicyService(onnx)
    try:
        assert _request(service, obs).observation[STATE].shape == (T_OBS, 5)
    finally:
        service.close()


def test_sidecar_state_parts_must_add_up_to_the_state_input():
    from librobot.serve.sidecar import InputBinding, OnnxPolicySpec

    binding = InputBinding(STATE, "state", (1, 5))
    spec = OnnxPolicySpec(model="policy.onnx", chunk_size=4, action_dim=A, inputs=(binding,), state_parts=PARTS)
    assert spec.state_parts == ((ENV, 3), (STATE, 2)) and spec.to_dict()["state_parts"] == PARTS
    assert OnnxPolicySpec.from_dict(spec.to_dict()).state_parts == spec.state_parts
    assert (
        "state_parts"
        not in OnnxPolicySpec(model="policy.onnx", chunk_size=4, action_dim=A, inputs=(binding,)).to_dict()
    )
    with pytest.raises(SidecarError, match=r"add up to 6 values, but there is a last axis of 5"):
        OnnxPolicySpec(
            model="policy.onnx", chunk_size=4, action_dim=A, inputs=(binding,), state_parts=[[ENV, 3], [STATE, 3]]
        )
    with pytest.raises(SidecarError, match="a positive integer"):
        OnnxPolicySpec(model="policy.onnx", chunk_size=4, action_dim=A, inputs=(binding,), state_parts=[[ENV, 0]])
