"""Wire format, boundary validation, dynamic batching and auth, without a network."""

import threading

import numpy as np
import pytest
from _serve_testlib import LinearChunkPolicy, MixtureFlowPolicy

from librobot.core.errors import ConfigError
from librobot.serve.auth import TokenAuth, load_token_file
from librobot.serve.errors import (
    DeadlineExceededError,
    MalformedRequestError,
    OverloadedError,
    RequestError,
    UnauthenticatedError,
)
from librobot.serve.service import PolicyService, ServeConfig
from librobot.serve.stats import LatencyRecorder
from librobot.serve.wire import (
    DTYPES,
    decode_array,
    decode_msgpack,
    encode_array,
    encode_msgpack,
    encode_request,
    parse_request,
)

TOKEN = "t0k3n-" + "a" * 26


def test_arrays_round_trip_for_every_dtype_as_raw_bytes():
    rng = np.random.default_rng(0)
    for name in DTYPES:
        array = (rng.normal(size=(2, 3, 4)) * 50).astype(name)
        encoded = encode_array(array)
        assert isinstance(encoded["data"], bytes) and len(encoded["data"]) == array.nbytes
        back = decode_array(decode_msgpack(encode_msgpack(encoded), 1 << 20), "x")
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)
    big_endian = np.arange(4, dtype=">f4")
    np.testing.assert_array_equal(decode_array(encode_array(big_endian), "x"), big_endian)


@pytest.mark.parametrize(
    "obj, match",
    [
        ({"dtype": "object", "shape": [1], "data": b"x" * 8}, "dtype 'object'"),
        ({"dtype": "float32", "shape": [2], "data": b"x" * 4}, "do not hold shape"),
        ({"dtype": "float32", "shape": [-1], "data": b""}, "non-negative"),
        ({"dtype": "float32", "shape": [1] * 9, "data": b"x" * 4}, "at most 8"),
        ({"dtype": "float32", "shape": [1], "data": "abcd"}, "must be bytes"),
        ({"dtype": "float32", "shape": [1]}, "encoded as"),
        ([1.0, 2.0], "encoded as"),
        # element counts that wrap around in int64 (to 0, or a negative byte count) or that numpy refuses
        ({"dtype": "float32", "shape": [2**63], "data": b""}, r"\[9223372036854775808\] describes more than 2\*\*40"),
        ({"dtype": "float32", "shape": [2**32, 2**32], "data": b""}, r"describes more than 2\*\*40 elements"),
        ({"dtype": "uint8", "shape": [0, 2**62], "data": b""}, r"describes more than 2\*\*40 elements"),
        ({"dtype": "float64", "shape": [2**20, 2**20], "data": b"x"}, r"1 bytes do not hold .* \(8796093022208 "),
    ],
)
def test_malformed_arrays_are_refused_naming_the_field(obj, match):
    with pytest.raises(MalformedRequestError, match=match) as info:
        decode_array(obj, "observation.state")
    assert info.value.field == "observation.state" and info.value.status == 400


def test_msgpack_decoding_refuses_garbage_and_extension_types():
    import msgpack

    with pytest.raises(MalformedRequestError, match="not valid msgpack"):
        decode_msgpack(b"\xc1\xff\x00garbage", 1024)
    with pytest.raises(MalformedRequestError, match="not valid msgpack"):
        decode_msgpack(msgpack.packb(msgpack.ExtType(1, b"pickle?")), 1024)
    with pytest.raises(MalformedRequestError, match="must be a map"):
        parse_request(decode_msgpack(msgpack.packb([1, 2]), 1024))


def _service(**kw):
    return PolicyService(LinearChunkPolicy.random(4, 6, 3, tasks=["stack the blocks", "sweep"]), ServeConfig(**kw))


def test_validation_names_the_field_and_the_fix():
    service = _service()
    good = {"observation.state": np.zeros(4, np.float32)}
    cases = [
        (
            {"observation.stat": good["observation.state"]},
            "sweep",
            "observation.stat",
            "did you mean 'observation.state'",
        ),
        (
            {"observation.state": np.zeros(5, np.float32)},
            "sweep",
            "observation.state",
            r"expected shape \[4\], got \[5\]",
        ),
        (
            {"observation.state": np.zeros(4, np.int64)},
            "sweep",
            "observation.state",
            "expected dtype float32, got int64",
        ),
        ({"observation.state": np.array([0, np.inf, 0, 0], np.float32)}, "sweep", "observation.state", "NaN or inf"),
        (good, "swep", "task", "did you mean 'sweep'"),
        (good, None, "task", "required"),
    ]
    for obs, task, field, match in cases:
        with pytest.raises(RequestError, match=match) as info:
            service.validate(parse_request({"observation": {k: encode_array(v) for k, v in obs.items()}, "task": task}))
        assert info.value.field == field and info.value.status == 422
    with pytest.raises(RequestError, match="unknown request key") as info:
        parse_request({"observation": {"observation.state": encode_array(good["observation.state"])}, "tsk": "sweep"})
    assert info.value.field == "tsk"
    with pytest.raises(RequestError, match="does not support real-time chunking") as info:
        service.validate(
            parse_request(decode_msgpack(encode_request(good, "sweep", prefix_actions=np.zeros((2, 3))), 1 << 20))
        )
    assert info.value.field == "prefix_actions"
    ok = service.validate(
        parse_request(decode_msgpack(encode_request({"observation.state": np.ones(4)}, "sweep"), 1 << 20))
    )
    assert ok.observation["observation.state"].dtype == np.float32  # float64 coerced to the declared float32


def test_rtc_prefixes_are_checked_and_padded():
    service = PolicyService(MixtureFlowPolicy(horizon=8))
    request = parse_request(
        decode_msgpack(
            encode_request(
                {"observation.state": np.zeros(2)},
                prefix_actions=np.ones((3, 2)),
                prefix_weights=np.array([1, 0.5, 0.2]),
            ),
            1 << 20,
        )
    )
    checked = service.validate(request)
    assert checked.prefix_actions.shape == (8, 2) and checked.prefix_weights.tolist() == pytest.approx(
        [1, 0.5, 0.2, 0, 0, 0, 0, 0]
    )
    bad = parse_request(
        decode_msgpack(encode_request({"observation.state": np.zeros(2)}, prefix_actions=np.ones((3, 5))), 1 << 20)
    )
    with pytest.raises(RequestError, match="action dims") as info:
        service.validate(bad)
    assert info.value.field == "prefix_actions"


def test_dynamic_batching_makes_one_call_for_concurrent_requests():
    service = _service(max_batch_size=8, batch_timeout_ms=10_000)  # fills on size, not time
    policy = service.policy
    requests = [
        service.validate(
            parse_request(
                decode_msgpack(encode_request({"observation.state": np.full(4, i, np.float32)}, "sweep"), 1 << 20)
            )
        )
        for i in range(8)
    ]
    futures = [service.submit(r) for r in requests]
    results = [f.result(timeout=30) for f in futures]
    assert policy.batched_calls == [8] and policy.calls == 0
    for i, result in enumerate(results):
        np.testing.assert_allclose(result.action, policy.predict_chunk({"observation.state": np.full(4, i)}), rtol=1e-6)
        assert result.batch_size == 8
    service.close()


@pytest.mark.parametrize("batch", [1, 2])  # per-request workers, and the batcher
def test_a_full_queue_answers_overloaded_at_once(batch):
    gate = threading.Event()

    class Blocking(LinearChunkPolicy):
        def predict_chunk(self, observation, task=None):
            gate.wait(30)
            return super().predict_chunk(observation, task)

    base = LinearChunkPolicy.random(4, 6, 3)
    service = PolicyService(
        Blocking(base.m, base.b, 6, 3), ServeConfig(max_batch_size=batch, batch_timeout_ms=0, max_queue=2, workers=1)
    )
    request = service.validate(
        parse_request(decode_msgpack(encode_request({"observation.state": np.zeros(4, np.float32)}), 1 << 20))
    )
    pending = [service.submit(request)]
    with pytest.raises(OverloadedError, match="queue full"):
        for _ in range(10):
            pending.append(service.submit(request))
    gate.set()
    assert all(f.result(timeout=30).action.shape == (6, 3) for f in pending)
    service.close()


@pytest.mark.parametrize("batch", [1, 2])
def test_waiting_for_a_hung_policy_is_bounded_by_the_inference_timeout(batch):
    gate = threading.Event()

    class Hung(LinearChunkPolicy):
        def predict_chunk(self, observation, task=None):
            gate.wait(30)
            return super().predict_chunk(observation, task)

    base = LinearChunkPolicy.random(4, 6, 3)
    service = PolicyService(Hung(base.m, base.b, 6, 3), ServeConfig(max_batch_size=batch, inference_timeout_s=0.2))
    request = service.validate(parse_request({"observation": {"observation.state": encode_array(np.zeros(4))}}))
    try:
        with pytest.raises(DeadlineExceededError, match=r"inference timeout of 0.2 s: --inference-timeout-s"):
            service.run(request)  # no deadline from the caller: the server's bound applies
        assert service.deadline(100.0, 5.0) == 100.2 and service.deadline(100.0, 0.05) == 100.05
    finally:
        gate.set()
    service.close()
    for bad in ({"inference_timeout_s": 0}, {"read_timeout_s": -1}, {"max_connections": 0}):
        with pytest.raises(ConfigError, match="read_timeout_s > 0, inference_timeout_s > 0 and max_connections >= 1"):
            ServeConfig(**bad)


def test_token_auth_is_constant_time_over_all_tokens_and_validates_tokens(tmp_path):
    auth = TokenAuth([TOKEN, "second-token-" + "b" * 20])
    auth.check(f"Bearer {TOKEN}", None)
    auth.check(None, "second-token-" + "b" * 20)
    for header, key in [(None, None), ("Bearer wrong", None), ("Basic " + TOKEN, None), (None, TOKEN[:-1])]:
        with pytest.raises(UnauthenticatedError):
            auth.check(header, key)
    with pytest.raises(ConfigError, match="shorter than 16"):
        TokenAuth(["short"])
    path = tmp_path / "tokens"
    path.write_text(f"# serving tokens\n\n{TOKEN}\n")
    path.chmod(0o600)
    load_token_file(path).check(f"Bearer {TOKEN}", None)
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no token"):
        load_token_file(path)


def test_latency_recorder_percentiles_and_histogram():
    rec = LatencyRecorder(window=1000)
    for ms in range(1, 101):
        rec.record(ms / 1e3)
    summary = rec.summary()
    assert summary["count"] == 100 and summary["max_ms"] == pytest.approx(100)
    assert summary["p50_ms"] == pytest.approx(50.5) and summary["p99_ms"] == pytest.approx(99.01)
    assert (
        summary["histogram_ms"]["1.0"] == 1
        and summary["histogram_ms"]["50.0"] == 50
        and summary["histogram_ms"]["+Inf"] == 100
    )
