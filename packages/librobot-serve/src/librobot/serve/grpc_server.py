"""The gRPC policy server (service ``librobot.serve.v1.PolicyService`` in proto/policy.proto).

Same ``PolicyService`` as REST. Status codes: UNAUTHENTICATED (credentials in the ``authorization:
Bearer …`` or ``x-api-key`` metadata), RESOURCE_EXHAUSTED (message over ``max_request_bytes``,
enforced by gRPC itself; or a full queue as UNAVAILABLE), INVALID_ARGUMENT (a field, named in the
details; also a policy output of NaN/inf), DEADLINE_EXCEEDED (the client's deadline, capped by
``inference_timeout_s``, passed before the chunk was ready). ``max_connections`` bounds the RPCs in
progress (more: RESOURCE_EXHAUSTED) and ``read_timeout_s`` a new connection's handshake.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from librobot.core.extras import require
from librobot.core.logging import get_logger
from librobot.serve.errors import DeadlineExceededError, RequestError
from librobot.serve.proto import load as load_proto
from librobot.serve.service import PolicyService
from librobot.serve.wire import PredictRequest, array_to_tensor, parse_request, tensor_to_dict

EXTRA = "librobot-serve[grpc]"
log = get_logger("serve.grpc")


def request_from_proto(message: Any) -> PredictRequest:
    doc: dict[str, Any] = {"observation": {k: tensor_to_dict(v) for k, v in message.observation.items()}}
    if message.HasField("task"):
        doc["task"] = message.task
    for name in ("prefix_actions", "prefix_weights"):
        if message.HasField(name):
            doc[name] = tensor_to_dict(getattr(message, name))
    if message.request_id:
        doc["request_id"] = message.request_id
    return parse_request(doc)


class GrpcServer:
    def __init__(
        self,
        service: PolicyService,
        host: str = "127.0.0.1",
        port: int = 50051,
        *,
        max_workers: int = 64,
        interceptors: tuple = (),
    ) -> None:
        """``interceptors``: extra ``grpc.ServerInterceptor`` objects (logging, tracing…)."""
        grpc = require("grpc", extra=EXTRA, purpose="the gRPC policy server")
        self.grpc = grpc
        self.pb2, pb2_grpc = load_proto()
        self.service = service
        config = service.config
        options = [
            ("grpc.max_receive_message_length", config.max_request_bytes),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.so_reuseport", 0),
            ("grpc.server_handshake_timeout_ms", max(1, int(config.read_timeout_s * 1e3))),
        ]
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers, thread_name_prefix="librobot-grpc"),
            options=options,
            interceptors=list(interceptors),
            maximum_concurrent_rpcs=config.max_connections,
        )
        pb2_grpc.add_PolicyServiceServicer_to_server(_Servicer(self), self._server)
        self.host = host
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise RuntimeError(f"gRPC could not bind {host}:{port}")

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> GrpcServer:
        self._server.start()
        return self

    def stop(self, grace: float = 1.0) -> None:
        self._server.stop(grace).wait()

    def __enter__(self) -> GrpcServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _Servicer:
    """Implements the generated servicer's methods (duck-typed, so the class needs no generated base)."""

    def __init__(self, server: GrpcServer) -> None:
        self.server = server
        self.service = server.service
        self.pb2 = server.pb2
        self.codes = server.grpc.StatusCode

    def _auth(self, context: Any, method: str, needs: bool = True) -> None:
        if not needs:
            return
        metadata = dict(context.invocation_metadata())
        try:
            self.service.authenticate(metadata.get("authorization"), metadata.get("x-api-key"))
        except RequestError as exc:
            self.service.metrics.count("grpc", method, "UNAUTHENTICATED")
            context.abort(self.codes.UNAUTHENTICATED, exc.detail)

    def Predict(self, request: Any, context: Any) -> Any:
        received = time.monotonic()
        metrics = self.service.metrics
        self._auth(context, "predict")
        metrics.enter()
        try:
            try:
                req = self.service.validate(request_from_proto(request))
                prediction = self.service.run(req, self.service.deadline(received, context.time_remaining()))
            except (RequestError, DeadlineExceededError) as exc:
                code = getattr(self.codes, exc.grpc_code)
                metrics.count("grpc", "predict", exc.grpc_code)
                field = getattr(exc, "field", None)
                context.abort(code, f"{field}: {exc.detail}" if field else str(exc))
            except Exception:  # this request fails; the server keeps serving
                log.exception("predict failed")
                metrics.count("grpc", "predict", "INTERNAL")
                context.abort(self.codes.INTERNAL, "internal server error; the server's log has the details")
            server_ms = (time.monotonic() - received) * 1e3
            metrics.latency.record(server_ms / 1e3)
            metrics.count("grpc", "predict", "OK")
            t = prediction.timing(server_ms)
            return self.pb2.PredictResponse(
                action=array_to_tensor(self.pb2, prediction.action),
                timing=self.pb2.Timing(**t),
                request_id=req.request_id or "",
            )
        finally:
            metrics.leave()

    def Health(self, request: Any, context: Any) -> Any:
        self._auth(context, "health", self.service.config.health_requires_auth)
        self.service.metrics.count("grpc", "health", "OK")
        return self.pb2.HealthResponse(status="ok")

    def Info(self, request: Any, context: Any) -> Any:
        self._auth(context, "info")
        self.service.metrics.count("grpc", "info", "OK")
        return self.pb2.JsonDocument(json=json.dumps(self.service.info()))

    def Metrics(self, request: Any, context: Any) -> Any:
        self._auth(context, "metrics")
        self.service.metrics.count("grpc", "metrics", "OK")
        return self.pb2.JsonDocument(json=json.dumps(self.service.metrics.snapshot()))
