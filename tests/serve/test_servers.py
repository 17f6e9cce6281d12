"""REST and gRPC servers on 127.0.0.1 ephemeral ports, in-process: correctness, load, hostile input."""

import http.client
import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import msgpack
import numpy as np
import pytest
from _serve_testlib import LinearChunkPolicy

from librobot.serve.auth import TokenAuth
from librobot.serve.client import GrpcPolicyClient, RestPolicyClient
from librobot.serve.errors import RemotePolicyError
from librobot.serve.grpc_server import GrpcServer
from librobot.serve.proto import load as load_proto
from librobot.serve.rest import RestServer
from librobot.serve.service import PolicyService, ServeConfig
from librobot.serve.wire import encode_array, encode_request

TOKEN = "serve-test-token-" + "x" * 20
TASKS = ["stack the blocks", "sweep the floor"]
LIMIT = 64 << 10


@pytest.fixture(scope="module")
def servers():
    """Two services over one kind of policy: per-request calls, and dynamic batching."""
    made = {}
    for name, batch in (("plain", 1), ("batched", 16)):
        policy = LinearChunkPolicy.random(state_dim=6, horizon=16, action_dim=4, seed=1, tasks=TASKS)
        service = PolicyService(
            policy,
            ServeConfig(
                max_batch_size=batch, batch_timeout_ms=2.0, max_request_bytes=LIMIT, auth=TokenAuth([TOKEN]), docs=True
            ),
        )
        made[name] = (policy, service, RestServer(service, port=0).start(), GrpcServer(service, port=0).start())
    yield made
    for _, service, rest, grpc_server in made.values():
        rest.stop()
        grpc_server.stop()
        service.close()


def _obs(i):
    return {"observation.state": np.linspace(-1, 1, 6, dtype=np.float32) * (i % 17)}


def _clients(entry):
    _, _, rest, grpc_server = entry
    return {"rest": RestPolicyClient(rest.url, token=TOKEN), "grpc": GrpcPolicyClient(grpc_server.target, token=TOKEN)}


def test_both_transports_serve_the_policys_chunk_with_timing_and_metadata(servers):
    policy = servers["plain"][0]
    for kind, client in _clients(servers["plain"]).items():
        assert client.action_dim == 4 and client.chunk_size == 16 and not client.supports_rtc
        assert client.obs_horizon == 1 and client.info["obs_horizon"] == 1  # sent, not defaulted
        assert set(client.known_tasks) == set(TASKS) and list(client.input_features) == ["observation.state"]
        chunk = client.predict_chunk(_obs(3), "sweep the floor")
        np.testing.assert_allclose(chunk, policy.predict_chunk(_obs(3)), rtol=1e-5, atol=1e-5)
        assert chunk.dtype == np.float32 and chunk.shape == (16, 4)
        assert set(client.last_timing) == {"queue_ms", "inference_ms", "server_ms", "batch_size"}
        assert (
            client.last_timing["batch_size"] == 1
            and client.last_timing["server_ms"] >= client.last_timing["inference_ms"]
        )
        assert client.health() == {"status": "ok"}
        metrics = client.metrics()
        assert any(r["transport"] == kind and r["method"] == "predict" and r["count"] >= 1 for r in metrics["requests"])


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_load_2000_requests_at_concurrency_32_with_zero_failures(servers, transport):
    policy, service, _, _ = servers["batched"]
    client = _clients(servers["batched"])[transport]
    before = dict(service.metrics.batch_sizes)
    n = 2000

    def one(i):
        chunk = client.predict_chunk(_obs(i), TASKS[i % 2])
        return np.abs(chunk - policy.predict_chunk(_obs(i))).max()

    with ThreadPoolExecutor(32) as pool:
        errors = list(pool.map(one, range(n)))
    assert len(errors) == n and max(errors) < 1e-4  # every answer is its own request's chunk
    assert client.attempts == n and client.retried == 0  # no failure, no retry
    batches = {k: v - before.get(k, 0) for k, v in service.metrics.batch_sizes.items()}
    assert sum(k * v for k, v in batches.items()) == n
    assert max(k for k, v in batches.items() if v) > 1  # concurrent requests were batched


def _post(rest, body, headers=None, token=TOKEN):
    conn = http.client.HTTPConnection(rest.host, rest.port, timeout=30)
    hdrs = {
        "Content-Type": "application/msgpack",
        **({"Authorization": f"Bearer {token}"} if token else {}),
        **(headers or {}),
    }
    conn.request("POST", "/v1/predict", body=body, headers=hdrs)
    response = conn.getresponse()
    status, content = response.status, response.read()
    conn.close()
    return status, content


def _rest_hostile_cases():
    good_state = encode_array(np.zeros(6, np.float32))
    pack = lambda doc: msgpack.packb(doc, use_bin_type=True)  # noqa: E731
    obs = lambda state, **kw: pack({"observation": {"observation.state": state}, "task": TASKS[0], **kw})  # noqa: E731
    arr = lambda a: encode_array(np.asarray(a))  # noqa: E731
    cases = [
        # (body, headers, token, status, field)
        (obs(good_state), {}, None, 401, None),
        (obs(good_state), {}, "wrong-token-" + "y" * 20, 401, None),
        (obs(good_state), {"Authorization": "Basic abc"}, None, 401, None),
        (obs(good_state), {"X-API-Key": TOKEN[:-1] + "?"}, None, 401, None),
        (b"\x00" * (LIMIT + 1), {}, TOKEN, 413, None),
        (obs({"dtype": "float32", "shape": [LIMIT // 4], "data": b"\x00" * LIMIT}), {}, TOKEN, 413, None),
        (obs(good_state), {"Content-Type": "application/json"}, TOKEN, 415, None),
        (b"not msgpack \xc1", {}, TOKEN, 400, None),
        (pack([1, 2, 3]), {}, TOKEN, 400, None),
        (obs({"dtype": "float32", "shape": [6], "data": b"\x00" * 8}), {}, TOKEN, 400, "observation.state"),
        (obs({"dtype": "complex64", "shape": [6], "data": b"\x00" * 48}), {}, TOKEN, 400, "observation.state"),
        (obs([0.0] * 6), {}, TOKEN, 400, "observation.state"),
        (pack({"observation": {"observation.stat": good_state}, "task": TASKS[0]}), {}, TOKEN, 422, "observation.stat"),
        (pack({"observation": {}, "task": TASKS[0]}), {}, TOKEN, 422, "observation"),
        (pack({"task": TASKS[0]}), {}, TOKEN, 422, "observation"),
        (obs(arr(np.zeros(7, np.float32))), {}, TOKEN, 422, "observation.state"),
        (obs(arr(np.zeros((2, 6), np.float32))), {}, TOKEN, 422, "observation.state"),
        (obs(arr(np.zeros(6, np.int32))), {}, TOKEN, 422, "observation.state"),
        (obs(arr(np.array([0, 0, np.nan, 0, 0, 0], np.float32))), {}, TOKEN, 422, "observation.state"),
        (obs(arr(np.array([0, 0, 0, 0, 0, -np.inf], np.float32))), {}, TOKEN, 422, "observation.state"),
        (pack({"observation": {"observation.state": good_state}, "task": "juggle"}), {}, TOKEN, 422, "task"),
        (pack({"observation": {"observation.state": good_state}, "task": 7}), {}, TOKEN, 422, "task"),
        (pack({"observation": {"observation.state": good_state}}), {}, TOKEN, 422, "task"),
        (obs(good_state, extra=1), {}, TOKEN, 422, "extra"),
        (obs(good_state, prefix_actions=arr(np.zeros((2, 4), np.float32))), {}, TOKEN, 422, "prefix_actions"),
        (obs(good_state, request_id="r" * 500), {}, TOKEN, 422, "request_id"),
    ]
    return cases


def test_rest_hostile_inputs_get_the_right_4xx_while_good_requests_keep_working(servers):
    policy, service, rest, _ = servers["plain"]
    cases = _rest_hostile_cases()
    good_before = sum(
        c for (t, m, o), c in service.metrics.requests.items() if t == "rest" and m == "predict" and o == "200"
    )
    rounds = 12  # 26 cases x 12 = 312 hostile requests, each followed by a good one
    for r in range(rounds):
        for body, headers, token, status, field in cases:
            got, content = _post(rest, body, headers, token)
            assert got == status, (status, field, content[:300])
            error = json.loads(content)["error"]
            assert error["status"] == status and error["field"] == field and error["message"]
            ok, content = _post(rest, encode_request(_obs(r), TASKS[r % 2]))
            assert ok == 200
            chunk = msgpack.unpackb(content, raw=False)["action"]
            np.testing.assert_allclose(
                np.frombuffer(chunk["data"], np.float32).reshape(16, 4),
                policy.predict_chunk(_obs(r)),
                rtol=1e-5,
                atol=1e-5,
            )
    good_after = sum(
        c for (t, m, o), c in service.metrics.requests.items() if t == "rest" and m == "predict" and o == "200"
    )
    assert good_after - good_before == rounds * len(cases)
    client = RestPolicyClient(rest.url, token=TOKEN)
    with pytest.raises(RemotePolicyError, match=r"'task'.*juggle") as info:
        client.predict_chunk(_obs(1), "juggle")
    assert info.value.status == 422 and info.value.field == "task"


def test_grpc_hostile_inputs_get_the_right_status_while_good_requests_keep_working(servers):
    policy, _, _, grpc_server = servers["plain"]
    pb2, pb2_grpc = load_proto()
    channel = grpc.insecure_channel(grpc_server.target, options=[("grpc.max_send_message_length", 4 * LIMIT)])
    stub = pb2_grpc.PolicyServiceStub(channel)
    auth = (("authorization", f"Bearer {TOKEN}"),)

    def request(state, task=TASKS[0], **kw):
        msg = pb2.PredictRequest(observation={"observation.state": pb2.Tensor(**state)}, **kw)
        if task is not None:
            msg.task = task
        return msg

    good = encode_array(np.zeros(6, np.float32))
    codes = grpc.StatusCode
    cases = [
        (request(good), (), codes.UNAUTHENTICATED, None),
        (request(good), (("authorization", "Bearer nope-" + "z" * 20),), codes.UNAUTHENTICATED, None),
        (
            request({"dtype": "float32", "shape": [LIMIT // 4 + 8], "data": b"\x00" * (LIMIT + 32)}),
            auth,
            codes.RESOURCE_EXHAUSTED,
            None,
        ),
        (
            request({"dtype": "float32", "shape": [6], "data": b"\x00" * 7}),
            auth,
            codes.INVALID_ARGUMENT,
            "observation.state",
        ),
        (
            request({"dtype": "bogus", "shape": [6], "data": b"\x00" * 24}),
            auth,
            codes.INVALID_ARGUMENT,
            "observation.state",
        ),
        (request(encode_array(np.zeros(5, np.float32))), auth, codes.INVALID_ARGUMENT, "observation.state"),
        (request(encode_array(np.zeros(6, np.float64) + np.nan)), auth, codes.INVALID_ARGUMENT, "observation.state"),
        (request(encode_array(np.zeros(6, np.uint8))), auth, codes.INVALID_ARGUMENT, "observation.state"),
        (request(good, task="juggle"), auth, codes.INVALID_ARGUMENT, "task"),
        (request(good, task=None), auth, codes.INVALID_ARGUMENT, "task"),
        (
            request(good, prefix_actions=pb2.Tensor(**encode_array(np.zeros((2, 4), np.float32)))),
            auth,
            codes.INVALID_ARGUMENT,
            "prefix_actions",
        ),
        (
            pb2.PredictRequest(
                observation={"observation.state": pb2.Tensor(**good), "observation.images.x": pb2.Tensor(**good)},
                task=TASKS[0],
            ),
            auth,
            codes.INVALID_ARGUMENT,
            "observation.images.x",
        ),
    ]
    for r in range(25):  # 12 cases x 25 = 300 hostile requests
        for message, metadata, code, field in cases:
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(message, metadata=metadata, timeout=30)
            assert info.value.code() == code, (code, field, info.value.details())
            if field:
                assert info.value.details().startswith(f"{field}:"), info.value.details()
            ok = stub.Predict(
                request(encode_array(_obs(r)["observation.state"]), TASKS[r % 2]), metadata=auth, timeout=30
            )
            np.testing.assert_allclose(
                np.frombuffer(ok.action.data, np.float32).reshape(16, 4),
                policy.predict_chunk(_obs(r)),
                rtol=1e-5,
                atol=1e-5,
            )
    assert stub.Health(pb2.Empty(), timeout=30).status == "ok"
    channel.close()


def test_openapi_schema_documents_the_binary_endpoints(servers):
    rest = servers["plain"][2]
    conn = http.client.HTTPConnection(rest.host, rest.port, timeout=30)
    conn.request("GET", "/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})  # ServeConfig(docs=True)
    schema = json.loads(conn.getresponse().read())
    predict = schema["paths"]["/v1/predict"]["post"]
    assert "application/msgpack" in predict["requestBody"]["content"]
    assert {"200", "401", "408", "413", "415", "422", "504"} <= set(predict["responses"])
    assert {"/v1/info", "/v1/health", "/v1/metrics"} <= set(schema["paths"])
    assert _post(rest, encode_request(_obs(1), TASKS[0]))[0] == 200
    conn.request("GET", "/v1/metrics?format=prometheus", headers={"X-API-Key": TOKEN})
    text = conn.getresponse().read().decode()
    assert 'librobot_requests_total{transport="rest",method="predict",outcome="200"}' in text
    assert "librobot_request_latency_ms_bucket" in text
    conn.request("GET", "/v1/info")
    response = conn.getresponse()
    assert response.status == 401 and json.loads(response.read())["error"]["status"] == 401
