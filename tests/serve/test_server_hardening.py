"""Hostile and unlucky clients: NaN-producing inputs, slow senders, too many connections, hung
policies, disconnects, bad headers, docs endpoints. Servers on 127.0.0.1 ephemeral ports."""

import http.client
import json
import logging
import socket
import threading
import time

import grpc
import msgpack
import numpy as np
import pytest
from _serve_testlib import LinearChunkPolicy

from librobot.core.errors import SpecError
from librobot.core.specs import FeatureSpec
from librobot.serve.auth import TokenAuth
from librobot.serve.grpc_server import GrpcServer
from librobot.serve.proto import load as load_proto
from librobot.serve.rest import RestServer
from librobot.serve.service import PolicyService, ServeConfig
from librobot.serve.validation import coerce_input
from librobot.serve.wire import encode_array, encode_request

TOKEN = "hardening-token-" + "h" * 24
STATE = "observation.state"
HUGE = np.array([3e38, -3e38, 3e38, -3e38, 3e38, -3e38], np.float32)  # finite float32


class Float32NormalisingPolicy(LinearChunkPolicy):
    """Normalises the state in float32 as an exported graph does: huge inputs overflow to inf → NaN."""

    def predict_chunk(self, observation, task=None):
        with np.errstate(over="ignore", invalid="ignore"):
            z = np.asarray(observation[STATE], np.float32).reshape(-1) / np.float32(0.5)
            return (self.m.astype(np.float32) @ z + self.b.astype(np.float32)).reshape(self.h, self.a)

    def predict_chunks(self, observations, tasks):
        self.batched_calls.append(len(tasks))
        return np.stack([self.predict_chunk({STATE: s}) for s in observations[STATE]])


class HangingPolicy(LinearChunkPolicy):
    """Blocks every call until ``release`` is set (a stuck GPU, a deadlocked plugin…)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.entered, self.release = threading.Event(), threading.Event()

    def predict_chunk(self, observation, task=None):
        self.entered.set()
        self.release.wait(30)
        return super().predict_chunk(observation, task)


def _service(policy=None, **config):
    policy = policy or LinearChunkPolicy.random(6, 4, 2, seed=3)
    return PolicyService(policy, ServeConfig(max_request_bytes=64 << 10, **config))


def _post(rest, body, headers=None, path="/v1/predict", method="POST", timeout=10):
    conn = http.client.HTTPConnection(rest.host, rest.port, timeout=timeout)
    conn.request(method, path, body=body, headers={"Content-Type": "application/msgpack", **(headers or {})})
    response = conn.getresponse()
    status, content = response.status, response.read()
    conn.close()
    return status, content


def _outcomes(service, transport="rest", method="predict"):
    return {o: c for (t, m, o), c in service.metrics.requests.items() if t == transport and m == method}


def _read_until_closed(sock, limit_s):
    """Everything the server sends until it closes the connection, and how long that took."""
    sock.settimeout(limit_s)
    began, data = time.monotonic(), b""
    while True:
        chunk = sock.recv(65536)  # socket.timeout here: the server kept the connection open
        if not chunk:
            return data, time.monotonic() - began
        data += chunk


# ---------------------------------------------------------------------------- 1. non-finite actions
def test_non_finite_actions_answer_422_and_invalid_argument_never_200():
    policy = Float32NormalisingPolicy.random(6, 4, 2, seed=3)
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(policy.predict_chunk({STATE: HUGE})).all()  # the reported failure: all NaN
    service = _service(policy)
    pb2, pb2_grpc = load_proto()
    with RestServer(service, port=0) as rest, GrpcServer(service, port=0) as grpc_server:
        status, content = _post(rest, encode_request({STATE: HUGE}))
        assert status == 422, content[:200]
        error = json.loads(content)["error"]
        assert error["field"] == "observation"
        assert "non-finite actions" in error["message"] and "range the policy was trained on" in error["message"]
        with grpc.insecure_channel(grpc_server.target) as channel:
            stub = pb2_grpc.PolicyServiceStub(channel)
            message = pb2.PredictRequest(observation={STATE: pb2.Tensor(**encode_array(HUGE))})
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(message, timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details().startswith("observation: the policy produced non-finite actions")
            ok = stub.Predict(pb2.PredictRequest(observation={STATE: pb2.Tensor(**encode_array(HUGE / 1e36))}))
            chunk = np.frombuffer(ok.action.data, np.float32).reshape(4, 2)
            np.testing.assert_allclose(chunk, policy.predict_chunk({STATE: HUGE / 1e36}), rtol=1e-6)
    assert _outcomes(service) == {"422": 1}
    assert _outcomes(service, "grpc") == {"INVALID_ARGUMENT": 1, "OK": 1}
    assert service.metrics.snapshot()["events"] == {"non_finite_action": 2}
    service.close()


def test_a_non_finite_chunk_in_a_batch_fails_only_its_own_request():
    policy = Float32NormalisingPolicy.random(6, 4, 2, seed=3)
    service = _service(policy, max_batch_size=4, batch_timeout_ms=200)
    from librobot.serve.wire import PredictRequest

    states = [np.full(6, 0.5, np.float32), HUGE, np.full(6, -1.0, np.float32)]
    futures = [service.submit(service.validate(PredictRequest({STATE: s}))) for s in states]
    with pytest.raises(Exception, match="non-finite actions") as info:
        futures[1].result(10)
    assert info.value.status == 422 and info.value.field == "observation"
    for i in (0, 2):
        np.testing.assert_allclose(futures[i].result(10).action, policy.predict_chunk({STATE: states[i]}), rtol=1e-6)
    assert policy.batched_calls == [3] and service.metrics.batch_sizes == {3: 1}  # one batched call
    service.close()


def test_float64_values_too_large_for_float32_are_named_as_such():
    spec = FeatureSpec(STATE, (3,), dtype="float32")
    with pytest.raises(SpecError, match=r"'observation.state': value 1e\+39 at index \[1\] does not fit in float32"):
        coerce_input(spec, np.array([0.0, 1e39, 0.0]))
    with pytest.raises(SpecError, match=r"contains NaN or inf \(first at index \[2\]\)"):
        coerce_input(spec, np.array([0.0, 1.0, np.inf]))


def test_channel_last_frames_are_taken_as_the_torch_policy_takes_them():
    spec = FeatureSpec("observation.images.top", (1, 3, 6, 8), kind="image")  # [T, C, H, W] of an export
    frame = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)  # what a camera gives
    expected = frame.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    np.testing.assert_array_equal(coerce_input(spec, frame), expected)
    np.testing.assert_array_equal(coerce_input(spec, frame.transpose(2, 0, 1)), expected)
    batch = np.stack([frame, frame[::-1]])  # a batch of channel-last frames
    np.testing.assert_array_equal(coerce_input(spec, batch, batch=2)[1], coerce_input(spec, frame[::-1]))
    with pytest.raises(SpecError, match=r"expected shape \[1, 3, 6, 8\], got \[8, 6, 3\]"):
        coerce_input(spec, np.zeros((8, 6, 3), np.uint8))  # another size is still named, not resized


# ---------------------------------------------------------------------------- 2. slow senders, connection cap
def test_slow_or_incomplete_requests_get_408_and_are_closed_within_the_read_timeout():
    service = _service(read_timeout_s=0.5)
    with RestServer(service, port=0) as rest:
        head = "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\nContent-Length: {}\r\n\r\n"
        for sent, expect in (
            (head.format(60_000).encode() + b"\x00" * 1024, b"HTTP/1.1 408 "),  # body never completes
            (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Le", b"HTTP/1.1 408 "),  # headers never complete
            (head.format(120_000_000).encode() + b"\x00" * 1024, b"HTTP/1.1 413 "),  # refused, then dropped
        ):
            with socket.create_connection((rest.host, rest.port)) as sock:
                sock.sendall(sent)
                data, elapsed = _read_until_closed(sock, limit_s=8.0)
            assert data.startswith(expect) and elapsed < 4.0, (sent[:60], data[:200], elapsed)
            assert (b"read timeout of 0.5 s" in data) == (b"408" in expect)
        status, _ = _post(rest, encode_request({STATE: np.ones(6, np.float32)}))
        assert status == 200  # the server kept serving
    outcomes = _outcomes(service)
    assert outcomes == {"disconnected": 1, "413": 1, "200": 1}  # the app saw the dropped body as a disconnect
    assert _outcomes(service, method="connection") == {"read_timeout": 2}
    service.close()


def test_connections_over_the_cap_get_503_and_are_closed():
    service = _service(max_connections=3, read_timeout_s=30)
    with RestServer(service, port=0) as rest:
        held = []
        try:
            for _ in range(3):  # keep-alive connections, each registered by a completed request
                conn = http.client.HTTPConnection(rest.host, rest.port, timeout=10)
                conn.request("GET", "/v1/health")
                assert conn.getresponse().read() == b'{"status":"ok"}'
                held.append(conn)
            with socket.create_connection((rest.host, rest.port)) as sock:
                data, elapsed = _read_until_closed(sock, limit_s=8.0)
            assert data.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in data and elapsed < 4.0
            assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["message"].startswith(
                "the server has 3 connections open"
            )
            held.pop().close()
            deadline, status = time.monotonic() + 5.0, None
            while status != 200 and time.monotonic() < deadline:  # until the server has seen the close
                try:
                    status, _ = _post(rest, encode_request({STATE: np.ones(6, np.float32)}))
                except (ConnectionError, http.client.HTTPException):
                    status = None
            assert status == 200
        finally:
            for conn in held:
                conn.close()
    assert _outcomes(service, method="connection")["over_limit"] >= 1
    service.close()


def test_grpc_refuses_rpcs_over_its_concurrency_limit():
    policy = HangingPolicy.random(6, 4, 2)
    service = _service(policy, max_connections=1)
    pb2, pb2_grpc = load_proto()
    message = pb2.PredictRequest(observation={STATE: pb2.Tensor(**encode_array(np.ones(6, np.float32)))})
    with GrpcServer(service, port=0) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb2_grpc.PolicyServiceStub(channel)
        first = stub.Predict.future(message, timeout=20)
        try:
            assert policy.entered.wait(10)
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(message, timeout=10)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            policy.release.set()
        assert np.frombuffer(first.result(10).action.data, np.float32).shape == (8,)
    service.close()


def test_grpc_drops_connections_that_never_complete_the_handshake():
    service = _service(read_timeout_s=0.5)
    with GrpcServer(service, port=0) as server:
        for sent in (b"", b"PRI * HTTP/2.0\r\n"):  # nothing; half of the HTTP/2 preface
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(sent)
                data, elapsed = _read_until_closed(sock, limit_s=8.0)
            assert b"Did not receive HTTP/2 settings before handshake timeout" in data and elapsed < 4.0
    service.close()


# ---------------------------------------------------------------------------- 3. hung policies, disconnects, bad input
def test_a_hung_policy_answers_504_and_deadline_exceeded_even_without_a_client_deadline():
    policy = HangingPolicy.random(6, 4, 2)
    service = _service(policy, inference_timeout_s=0.3)
    pb2, pb2_grpc = load_proto()
    try:
        with RestServer(service, port=0) as rest, GrpcServer(service, port=0) as server:
            with grpc.insecure_channel(server.target) as channel:
                stub = pb2_grpc.PolicyServiceStub(channel)
                message = pb2.PredictRequest(observation={STATE: pb2.Tensor(**encode_array(np.ones(6, np.float32)))})
                began = time.monotonic()
                pending = stub.Predict.future(message)  # no client deadline
                with pytest.raises(grpc.RpcError) as info:
                    pending.result(timeout=10)  # FutureTimeoutError here: the server waited without bound
                assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - began < 5
                assert "inference timeout of 0.3 s" in info.value.details()
            began = time.monotonic()
            status, content = _post(rest, encode_request({STATE: np.ones(6, np.float32)}))
            assert status == 504 and time.monotonic() - began < 5
            assert "--inference-timeout-s" in json.loads(content)["error"]["message"]
    finally:
        policy.release.set()
    assert _outcomes(service) == {"504": 1} and _outcomes(service, "grpc") == {"DEADLINE_EXCEEDED": 1}
    service.close()


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_a_client_that_disconnects_mid_body_is_not_a_server_error():
    service = _service()
    handler, logger = _Records(), logging.getLogger("librobot.serve.rest")
    logger.addHandler(handler)
    try:
        with RestServer(service, port=0) as rest:
            with socket.create_connection((rest.host, rest.port)) as sock:
                sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"\x00" * 100)
            deadline = time.monotonic() + 5
            while "disconnected" not in _outcomes(service) and time.monotonic() < deadline:
                time.sleep(0.01)  # polling for the server to notice, not a timing assertion
            status, _ = _post(rest, encode_request({STATE: np.ones(6, np.float32)}))
    finally:
        logger.removeHandler(handler)
    assert status == 200 and _outcomes(service) == {"disconnected": 1, "200": 1}
    assert [r for r in handler.records if r.levelno >= logging.WARNING] == []
    service.close()


def _hostile_body(shape):
    return msgpack.packb({"observation": {STATE: {"dtype": "float32", "shape": shape, "data": b""}}})


@pytest.mark.parametrize(
    "body, headers, field, text",
    [
        (None, {"X-Request-Timeout-Ms": "²"}, "x-request-timeout-ms", "whole number"),
        (None, {"X-Request-Timeout-Ms": "9" * 400}, "x-request-timeout-ms", "at most 10 digits"),
        (None, {"X-Request-Timeout-Ms": "-5"}, "x-request-timeout-ms", "whole number"),
        (None, {"X-Request-Timeout-Ms": "soon"}, "x-request-timeout-ms", "whole number"),
        (_hostile_body([2**63]), {}, STATE, "more than 2**40 elements"),
        (_hostile_body([2**32, 2**32]), {}, STATE, "more than 2**40 elements"),
        (_hostile_body([0, 2**62]), {}, STATE, "more than 2**40 elements"),
    ],
)
def test_client_mistakes_are_400_naming_the_field_without_internals(body, headers, field, text):
    service = _service()
    with RestServer(service, port=0) as rest:
        body = body if body is not None else encode_request({STATE: np.ones(6, np.float32)})
        status, content = _post(rest, body, headers)
    assert status == 400, content[:200]
    error = json.loads(content)["error"]
    assert error["field"] == field and text in error["message"], error
    assert "Error" not in error["message"] and "-9223372036854775808" not in error["message"]
    service.close()


def test_a_policy_crash_is_a_500_without_the_exception_text():
    class Broken(LinearChunkPolicy):
        def predict_chunk(self, observation, task=None):
            raise RuntimeError("secret internal detail")

    service = _service(Broken.random(6, 4, 2))
    logging.getLogger("librobot.serve.rest").disabled = True  # the expected traceback
    try:
        with RestServer(service, port=0) as rest:
            status, content = _post(rest, encode_request({STATE: np.ones(6, np.float32)}))
    finally:
        logging.getLogger("librobot.serve.rest").disabled = False
    message = json.loads(content)["error"]["message"]
    assert status == 500 and "secret" not in message and "RuntimeError" not in message
    service.close()


# ---------------------------------------------------------------------------- 4. docs endpoints
def test_docs_endpoints_are_off_by_default_and_the_schema_is_behind_auth_when_on():
    for docs in (False, True):
        service = _service(auth=TokenAuth([TOKEN]), docs=docs)
        with RestServer(service, port=0) as rest:
            for path in ("/docs", "/redoc", "/openapi.json"):
                status, _ = _post(rest, None, {"Authorization": f"Bearer {TOKEN}"}, path=path, method="GET")
                assert status == (200 if docs and path == "/openapi.json" else 404), (docs, path)
            if docs:
                status, content = _post(rest, None, path="/openapi.json", method="GET")
                assert status == 401 and json.loads(content)["error"]["status"] == 401
                status, content = _post(rest, None, {"X-API-Key": TOKEN}, path="/openapi.json", method="GET")
                assert status == 200 and "/v1/predict" in json.loads(content)["paths"]
                assert "/openapi.json" not in json.loads(content)["paths"]
        service.close()
