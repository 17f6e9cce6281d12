"""Clients: retries with backoff, deadlines, and the runtime driving a remote policy."""

import json
import socket
import threading

import grpc
import numpy as np
import pytest
from _serve_testlib import ClampRateFilter, LinearChunkPolicy, MixtureFlowPolicy, PointRobot

from librobot.serve import FakeClock, PolicyRuntime, RuntimeConfig, SimulatedLatencyExecutor
from librobot.serve.client import GrpcPolicyClient, RestPolicyClient, RetryPolicy
from librobot.serve.errors import DeadlineExceededError, RemotePolicyError
from librobot.serve.grpc_server import GrpcServer
from librobot.serve.rest import RestServer, create_app
from librobot.serve.service import PolicyService

OBS = {"observation.state": np.arange(6, dtype=np.float32)}
DELTA = np.array([0.1, -0.2])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rest_client_retries_until_the_server_comes_up():
    policy = LinearChunkPolicy.random(6, 8, 2)
    service, port, started, sleeps = PolicyService(policy), _free_port(), [], []

    def sleep(seconds):  # the client's backoff wait: the server appears during the second one
        sleeps.append(seconds)
        if len(sleeps) == 2:
            started.append(RestServer(service, port=port).start())

    client = RestPolicyClient(
        f"http://127.0.0.1:{port}", retry=RetryPolicy(retries=4, backoff_s=0.01, jitter=0.5), sleep=sleep, seed=0
    )
    try:
        chunk = client.predict_chunk(OBS)
    finally:
        for server in started:
            server.stop()
    np.testing.assert_allclose(chunk, policy.predict_chunk(OBS), rtol=1e-5)
    assert client.attempts == 3 and client.retried == 2
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02  # exponential, jittered down


class _Flaky:
    """ASGI wrapper answering 503 to the first ``n`` predict requests (a transient overload)."""

    def __init__(self, app, n):
        self.app, self.n = app, n

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/v1/predict" and self.n > 0:
            self.n -= 1
            body = json.dumps({"error": {"status": 503, "field": None, "message": "busy"}}).encode()
            await send(
                {"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def test_rest_client_retries_transient_503_but_not_a_bad_request():
    policy = LinearChunkPolicy.random(6, 8, 2, tasks=["a-task"])
    service = PolicyService(policy)
    sleeps = []
    with RestServer(service, port=0, app=_Flaky(create_app(service), 2)) as server:
        client = RestPolicyClient(server.url, retry=RetryPolicy(retries=3, backoff_s=0.01), sleep=sleeps.append)
        np.testing.assert_allclose(client.predict_chunk(OBS, "a-task"), policy.predict_chunk(OBS), rtol=1e-5)
        assert client.attempts == 3 and len(sleeps) == 2
        with pytest.raises(RemotePolicyError, match="'task'") as info:
            client.predict_chunk(OBS, "another task")
        assert info.value.status == 422 and client.attempts == 4  # refused at once, not retried


class _FlakyInterceptor(grpc.ServerInterceptor):
    def __init__(self, n):
        self.n = n

    def intercept_service(self, continuation, details):
        if details.method.endswith("/Predict") and self.n > 0:
            self.n -= 1

            def unavailable(request, context):
                context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")

            return grpc.unary_unary_rpc_method_handler(unavailable)
        return continuation(details)


def test_grpc_client_retries_unavailable_and_gives_up_at_its_deadline():
    policy = LinearChunkPolicy.random(6, 8, 2)
    service = PolicyService(policy)
    sleeps = []
    with GrpcServer(service, port=0, interceptors=(_FlakyInterceptor(2),)) as server:
        client = GrpcPolicyClient(server.target, retry=RetryPolicy(retries=3, backoff_s=0.01), sleep=sleeps.append)
        np.testing.assert_allclose(client.predict_chunk(OBS), policy.predict_chunk(OBS), rtol=1e-5)
        assert client.attempts == 3 and len(sleeps) == 2
    with GrpcServer(service, port=0, interceptors=(_FlakyInterceptor(10),)) as server:
        client = GrpcPolicyClient(server.target, retry=RetryPolicy(retries=2, backoff_s=0.01), sleep=sleeps.append)
        with pytest.raises(DeadlineExceededError, match="3 attempt"):
            client.predict_chunk(OBS)


class _Gated(LinearChunkPolicy):
    def __init__(self, gate):
        base = LinearChunkPolicy.random(6, 8, 2)
        super().__init__(base.m, base.b, 8, 2)
        self.gate = gate

    def predict_chunk(self, observation, task=None):
        self.gate.wait(30)
        return super().predict_chunk(observation, task)


def test_a_request_that_outlives_its_deadline_raises_deadline_exceeded():
    gate = threading.Event()
    service = PolicyService(_Gated(gate))
    try:
        with RestServer(service, port=0) as rest, GrpcServer(service, port=0) as grpc_server:
            for client in (
                RestPolicyClient(rest.url, timeout_s=0.2),
                GrpcPolicyClient(grpc_server.target, timeout_s=0.2),
            ):
                with pytest.raises(DeadlineExceededError, match=r"within 0.2 s"):
                    client.predict_chunk(OBS)
            gate.set()
            np.testing.assert_allclose(
                RestPolicyClient(rest.url).predict_chunk(OBS),
                service.policy.m.dot(OBS["observation.state"]).reshape(8, 2) + service.policy.b.reshape(8, 2),
                rtol=1e-5,
            )
    finally:
        gate.set()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_runtime_drives_a_remote_policy_with_async_inference(transport):
    service = PolicyService(LinearChunkPolicy.ramp(2, DELTA, 10))
    server = (RestServer(service, port=0) if transport == "rest" else GrpcServer(service, port=0)).start()
    try:
        client = RestPolicyClient(server.url) if transport == "rest" else GrpcPolicyClient(server.target)
        clock = FakeClock()
        robot, safety = PointRobot(clock, [0.0, 0.0]), ClampRateFilter([-10, -10], [10, 10])
        runtime = PolicyRuntime(
            client,
            safety,
            RuntimeConfig(control_hz=10, mode="async", async_threshold=4),
            clock=clock,
            executor=SimulatedLatencyExecutor(clock, 0.25),
        )
        stats = runtime.run(robot, 30)
    finally:
        server.stop()
    np.testing.assert_allclose(np.stack(robot.sent), [(k + 1) * DELTA for k in range(30)], atol=1e-5)
    assert stats.overruns == 1 and stats.starved_steps == 0 and len(safety.calls) == 30


def test_real_time_chunking_over_grpc():
    service = PolicyService(MixtureFlowPolicy(horizon=16, seed=1))
    with GrpcServer(service, port=0) as server:
        client = GrpcPolicyClient(server.target)
        assert client.supports_rtc
        clock = FakeClock()
        robot = PointRobot(clock, [0.0, 0.0])
        runtime = PolicyRuntime(
            client,
            ClampRateFilter([-10, -10], [10, 10]),
            RuntimeConfig(control_hz=10, mode="rtc", async_threshold=8),
            clock=clock,
            executor=SimulatedLatencyExecutor(clock, 0.25),
        )
        runtime.run(robot, 40)
    assert runtime.stats.inferences >= 4
    assert np.abs(np.diff(np.stack(robot.sent), axis=0)).max() < 0.3  # prefixes travelled and were honoured
