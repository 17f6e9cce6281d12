"""The REST policy server (FastAPI).

    POST /v1/predict   application/msgpack body (librobot.serve.wire) → msgpack {action, timing}
    GET  /v1/info      policy metadata: action_dim, chunk_size, inputs, known tasks, RTC support
    GET  /v1/health    {"status": "ok"} (no auth unless ServeConfig.health_requires_auth)
    GET  /v1/metrics   JSON, or Prometheus text with ?format=prometheus
    GET  /openapi.json only with ServeConfig.docs, behind the same auth (no /docs or /redoc pages:
                       they load JavaScript from a CDN)

Checks run cheapest first: credentials (401), size (413: Content-Length, then the bytes actually
read), media type (415), decoding and headers (400), fields (422). Errors are JSON
``{"error": {"status", "field", "message"}}``; any failure answers only its own request. A
policy that returns NaN/inf answers 422; one that takes longer than the request's deadline (at
most ``inference_timeout_s``) answers 504. Slow senders and connections over the limit are dropped
by the protocol (``librobot.serve.http_limits``).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at
# definition time, and ``Request`` is imported lazily inside ``create_app``.
import asyncio
import re
import socket
import threading
import time
from typing import Any

from librobot.core.extras import require
from librobot.core.logging import get_logger
from librobot.serve.errors import (
    DeadlineExceededError,
    MalformedRequestError,
    PayloadTooLargeError,
    RequestError,
    UnsupportedMediaTypeError,
)
from librobot.serve.http_limits import guarded_h11_protocol
from librobot.serve.service import PolicyService
from librobot.serve.wire import MSGPACK_TYPES, decode_msgpack, encode_array, encode_msgpack, parse_request

EXTRA = "librobot-serve[rest]"
DEADLINE_HEADER = "x-request-timeout-ms"
log = get_logger("serve.rest")

_ARRAY = {
    "type": "object",
    "properties": {
        "dtype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "data": {"type": "string", "format": "binary"},
    },
}
_PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/msgpack": {
                "schema": {
                    "type": "object",
                    "required": ["observation"],
                    "properties": {
                        "observation": {"type": "object", "additionalProperties": _ARRAY},
                        "task": {"type": "string"},
                        "prefix_actions": _ARRAY,
                        "prefix_weights": _ARRAY,
                        "request_id": {"type": "string"},
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "msgpack {action: array [H, A] float32, timing: {queue_ms, inference_ms, server_ms, batch_size}, request_id}",
            "content": {"application/msgpack": {}},
        },
        "400": {"description": "undecodable body"},
        "401": {"description": "missing or invalid token"},
        "408": {"description": "the request did not arrive within the read timeout"},
        "413": {"description": "body larger than the server's limit"},
        "415": {"description": "not application/msgpack"},
        "422": {"description": "a field is invalid (named in error.field), or the policy produced NaN/inf for it"},
        "503": {"description": "overloaded; retry with backoff"},
        "504": {"description": "no chunk before the deadline (x-request-timeout-ms, capped by the server)"},
    },
}


def _error(status: int, message: str, field: str | None = None) -> Any:
    from fastapi.responses import JSONResponse

    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 413:  # the rest of the body may never come: do not keep the connection for it
        headers = {"Connection": "close"}
    return JSONResponse(
        {"error": {"status": status, "field": field, "message": message}}, status_code=status, headers=headers
    )


def _header_int(request: Any, name: str, digits: int) -> int | None:
    """A header holding a whole number (ASCII digits only: str.isdigit() accepts '²', int() does not)."""
    value = request.headers.get(name)
    if value is None:
        return None
    if not re.fullmatch(rf"[0-9]{{1,{digits}}}", value):
        shown = value if len(value) <= 24 else value[:24] + "…"
        raise MalformedRequestError(f"expected a whole number of at most {digits} digits, got {shown!r}", field=name)
    return int(value)


async def _read_body(request: Any, limit: int) -> bytes:
    declared = _header_int(request, "content-length", 18)
    if declared is not None and declared > 16 * limit:  # not worth draining: answer and drop the connection
        raise PayloadTooLargeError(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit and (declared is None or declared <= limit):
            chunks.append(chunk)
        # Over the limit: keep draining (discarding) so the client reads the 413 rather than a reset.
    if size > limit or (declared is not None and declared > limit):
        raise PayloadTooLargeError(
            f"request body of {max(size, declared or 0)} bytes exceeds the limit of {limit} bytes"
        )
    return b"".join(chunks)


def create_app(service: PolicyService) -> Any:
    fastapi = require("fastapi", extra=EXTRA, purpose="the REST policy server")
    from fastapi import Request
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from starlette.requests import ClientDisconnect

    app = fastapi.FastAPI(
        title="LibroBot VLA policy server",
        version="1",
        description="Action chunks from a VLA policy. Bodies are msgpack with numpy arrays as {dtype, shape, data}.",
        docs_url=None,  # no unauthenticated schema, no CDN-hosted pages: ServeConfig.docs adds the schema
        redoc_url=None,
        openapi_url=None,
    )
    limit = service.config.max_request_bytes
    metrics = service.metrics

    def auth(request: Request) -> None:
        service.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))

    @app.post("/v1/predict", openapi_extra=_PREDICT_OPENAPI, response_class=Response)
    async def predict(request: Request) -> Response:
        received = time.monotonic()
        metrics.enter()
        try:
            auth(request)
            body = await _read_body(request, limit)
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media not in MSGPACK_TYPES:
                raise UnsupportedMediaTypeError(f"Content-Type must be application/msgpack, got {media or 'none'!r}")
            timeout_ms = _header_int(request, DEADLINE_HEADER, 10)
            req = service.validate(parse_request(decode_msgpack(body, limit)))
            deadline = service.deadline(received, None if timeout_ms is None else timeout_ms / 1e3)
            prediction = await service.run_async(req, deadline)
            server_ms = (time.monotonic() - received) * 1e3
            out = {
                "action": encode_array(prediction.action),
                "timing": prediction.timing(server_ms),
                "request_id": req.request_id,
            }
            metrics.latency.record(server_ms / 1e3)
            metrics.count("rest", "predict", 200)
            return Response(encode_msgpack(out), media_type="application/msgpack")
        except (RequestError, DeadlineExceededError) as exc:
            metrics.count("rest", "predict", exc.status)
            return _error(exc.status, getattr(exc, "detail", str(exc)), getattr(exc, "field", None))
        except ClientDisconnect:  # the client left (or was dropped for sending too slowly): nobody to answer
            log.debug("client disconnected before its request body arrived")
            metrics.count("rest", "predict", "disconnected")
            return Response(status_code=499)
        except Exception:  # the server keeps serving; this client gets a 500 without internals
            log.exception("predict failed")
            metrics.count("rest", "predict", 500)
            return _error(500, "internal server error; the server's log has the details")
        finally:
            metrics.leave()

    def guarded(name: str, handler: Any, *, needs_auth: bool = True) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                if needs_auth:
                    auth(request)
                result = handler(request)
            except RequestError as exc:
                metrics.count("rest", name, exc.status)
                return _error(exc.status, exc.detail, exc.field)
            metrics.count("rest", name, 200)
            return result

        endpoint.__name__ = name
        return endpoint

    app.get("/v1/health")(
        guarded("health", lambda r: JSONResponse({"status": "ok"}), needs_auth=service.config.health_requires_auth)
    )
    app.get("/v1/info")(guarded("info", lambda r: JSONResponse(service.info())))
    app.get("/v1/metrics")(
        guarded(
            "metrics",
            lambda r: (
                PlainTextResponse(metrics.prometheus())
                if r.query_params.get("format") == "prometheus"
                else JSONResponse(metrics.snapshot())
            ),
        )
    )
    if service.config.docs:
        app.get("/openapi.json", include_in_schema=False)(guarded("openapi", lambda r: JSONResponse(app.openapi())))
    return app


class RestServer:
    """uvicorn serving ``create_app(service)`` on a background thread (``port=0``: any free port)."""

    def __init__(
        self,
        service: PolicyService,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        app: Any = None,
        log_level: str = "warning",
    ) -> None:
        """``app``: an ASGI app wrapping ``create_app(service)`` (e.g. with middleware) to serve instead."""
        uvicorn = require("uvicorn", extra=EXTRA, purpose="the REST policy server")
        self.service = service
        self._socket = socket.create_server((host, port), backlog=512)
        self.host, self.port = self._socket.getsockname()[:2]
        app = app if app is not None else create_app(service)
        limits = service.config
        protocol = guarded_h11_protocol(
            read_timeout_s=limits.read_timeout_s,
            max_connections=limits.max_connections,
            on_event=lambda name: service.metrics.count("rest", "connection", name),
        )
        config = uvicorn.Config(app, http=protocol, log_level=log_level, access_log=False, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> "RestServer":
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._socket])), name="librobot-rest", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the REST server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._socket.close()

    def __enter__(self) -> "RestServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
