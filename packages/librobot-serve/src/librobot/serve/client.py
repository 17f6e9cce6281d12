"""Clients for the policy servers. Both implement ``PolicyInterface`` (and real-time chunking when
the served policy does), so ``PolicyRuntime`` drives a remote policy exactly like a local one,
including asynchronous inference: the HPC runs the model, the robot's computer runs the loop.

Every ``predict_chunk`` has a total deadline (``timeout_s``); inside it, failed attempts that are
safe to repeat (connection errors, timeouts, 429/502/503/504, UNAVAILABLE/ABORTED) are retried with
exponential backoff and jitter. A prediction has no side effects on the server, so repeating one is
safe. Errors about the request itself (4xx, INVALID_ARGUMENT, UNAUTHENTICATED) are raised at once
as ``RemotePolicyError`` naming the field.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from librobot.core.errors import ConfigError
from librobot.core.extras import require
from librobot.core.interfaces import PolicyInterface
from librobot.core.specs import FeatureSpec
from librobot.serve.errors import DeadlineExceededError, RemotePolicyError
from librobot.serve.wire import array_to_tensor, decode_array, decode_msgpack, encode_request, tensor_to_dict

RETRY_HTTP = (429, 502, 503, 504)
RETRY_GRPC = ("UNAVAILABLE", "ABORTED", "DEADLINE_EXCEEDED")


class _Retry(Exception):
    """An attempt failed in a way that may succeed if repeated."""


@dataclass
class RetryPolicy:
    retries: int = 3  # attempts after the first
    backoff_s: float = 0.05  # first wait; doubles each retry
    max_backoff_s: float = 1.0
    jitter: float = 0.5  # each wait is shortened by up to this fraction, at random

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        return base * (1.0 - self.jitter * rng.random())


class _RemotePolicy(PolicyInterface):
    def __init__(
        self,
        *,
        token: str | None,
        timeout_s: float,
        attempt_timeout_s: float | None,
        retry: RetryPolicy | None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        self.token = token
        self.timeout_s = float(timeout_s)
        self.attempt_timeout_s = attempt_timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep, self._clock = sleep, clock
        self._rng = random.Random(seed)
        self._info: dict[str, Any] | None = None
        self.attempts = 0
        self.retried = 0
        self.last_timing: dict[str, Any] = {}

    # ------------------------------------------------------------------ retry loop
    def _call(self, attempt: Callable[[float], Any], timeout_s: float | None) -> Any:
        deadline = self._clock() + (timeout_s or self.timeout_s)
        last: Exception | None = None
        for k in range(self.retry.retries + 1):
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            self.attempts += 1
            try:
                return attempt(min(remaining, self.attempt_timeout_s or remaining))
            except _Retry as exc:
                last = exc
            if k == self.retry.retries:
                break
            wait = self.retry.delay(k, self._rng)
            if self._clock() + wait >= deadline:
                break
            self.retried += 1
            self._sleep(wait)
        raise DeadlineExceededError(
            f"no answer from the policy server within {timeout_s or self.timeout_s:.3g} s "
            f"after {self.attempts} attempt(s); last error: {last}"
        )

    # ------------------------------------------------------------------ PolicyInterface
    @property
    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self._fetch_info()
        return self._info

    @property
    def action_dim(self) -> int:
        return int(self.info["action_dim"])

    @property
    def chunk_size(self) -> int:
        return int(self.info["chunk_size"])

    @property
    def obs_horizon(self) -> int:
        """T_obs the served policy reads: a PolicyRuntime driving this client sends windows of it."""
        return int(self.info.get("obs_horizon", 1))

    @property
    def execution(self) -> dict[str, Any]:
        """The served policy's recommended execution (a robot-side runtime with mode="auto" follows it)."""
        return dict(self.info.get("execution") or {})

    @property
    def supports_rtc(self) -> bool:
        return bool(self.info["supports_rtc"])

    @property
    def known_tasks(self) -> tuple[str, ...] | None:
        tasks = self.info.get("known_tasks")
        return tuple(tasks) if tasks else None

    @property
    def input_features(self) -> dict[str, FeatureSpec] | None:
        features = self.info.get("input_features")
        return {f["name"]: FeatureSpec.from_dict(f) for f in features} if features else None

    def predict_chunk(
        self,
        observation: Mapping[str, Any],
        task: str | None = None,
        *,
        prefix_actions: np.ndarray | None = None,
        prefix_weights: np.ndarray | None = None,
        timeout_s: float | None = None,
    ) -> np.ndarray:
        obs = {k: np.asarray(v) for k, v in observation.items()}
        action, timing = self._call(lambda t: self._predict(obs, task, prefix_actions, prefix_weights, t), timeout_s)
        self.last_timing = timing
        return action

    @abstractmethod
    def _fetch_info(self) -> dict[str, Any]: ...

    @abstractmethod
    def _predict(self, obs: dict, task: str | None, pa: Any, pw: Any, timeout: float) -> tuple[np.ndarray, dict]:
        """One attempt: (action [H, A], timing); raises _Retry when repeating may help."""


class RestPolicyClient(_RemotePolicy):
    """``RestPolicyClient("http://hpc:8000", token=...)``.

    Uses the standard library's ``http.client`` with one keep-alive connection per thread: no HTTP
    dependency on the robot's computer, and less overhead per request than httpx (2.4x the throughput
    in a 32-way load test here).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 5.0,
        attempt_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        ssl_context: Any | None = None,
        **kwargs: Any,
    ) -> None:
        require("msgpack", extra="librobot-serve[client]", purpose="the REST policy client")
        super().__init__(token=token, timeout_s=timeout_s, attempt_timeout_s=attempt_timeout_s, retry=retry, **kwargs)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"policy server URL must look like http://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl = ssl_context
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._local = threading.local()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _request(
        self, method: str, path: str, timeout: float, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, bytes]:
        conn = self._connection(timeout)
        try:
            conn.request(method, self._prefix + path, body=body, headers={**self._headers, **(headers or {})})
            response = conn.getresponse()
            status, content = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, closed keep-alive
            conn.close()
            self._local.conn = None
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        if status in RETRY_HTTP:
            raise _Retry(f"HTTP {status}: {content[:200]!r}")
        if status != 200:
            try:
                err = json.loads(content)["error"]
                message, field = err["message"], err.get("field")
            except (ValueError, KeyError, TypeError):
                message, field = content[:500].decode("utf-8", "replace"), None
            where = f"'{field}': " if field else ""
            raise RemotePolicyError(
                f"policy server refused the request (HTTP {status}): {where}{message}", status=status, field=field
            )
        return status, content

    def _get_json(self, path: str) -> dict[str, Any]:
        return self._call(lambda t: json.loads(self._request("GET", path, t)[1]), None)

    def _fetch_info(self) -> dict[str, Any]:
        return self._get_json("/v1/info")

    def health(self) -> dict[str, Any]:
        return self._get_json("/v1/health")

    def metrics(self) -> dict[str, Any]:
        return self._get_json("/v1/metrics")

    def _predict(self, obs: dict, task: str | None, pa: Any, pw: Any, timeout: float) -> tuple[np.ndarray, dict]:
        body = encode_request(obs, task, prefix_actions=pa, prefix_weights=pw)
        headers = {"Content-Type": "application/msgpack", "X-Request-Timeout-Ms": str(max(1, int(timeout * 1e3)))}
        _, content = self._request("POST", "/v1/predict", timeout, body, headers)
        message = decode_msgpack(content, max(len(content), 1024))
        return decode_array(message["action"], "action"), message["timing"]


class GrpcPolicyClient(_RemotePolicy):
    """``GrpcPolicyClient("hpc:50051", token=...)``."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        timeout_s: float = 5.0,
        attempt_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        max_message_bytes: int = 64 << 20,
        **kwargs: Any,
    ) -> None:
        grpc = require("grpc", extra="librobot-serve[grpc-client]", purpose="the gRPC policy client")
        from librobot.serve.proto import load as load_proto

        super().__init__(token=token, timeout_s=timeout_s, attempt_timeout_s=attempt_timeout_s, retry=retry, **kwargs)
        self._grpc = grpc
        self.pb2, pb2_grpc = load_proto()
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb2_grpc.PolicyServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def close(self) -> None:
        self._channel.close()

    def _rpc(self, method: str, request: Any, timeout: float) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
            if code in RETRY_GRPC:
                raise _Retry(f"{code}: {exc.details()}") from exc
            details = exc.details() or ""
            field = details.split(":", 1)[0] if code == "INVALID_ARGUMENT" and ":" in details else None
            raise RemotePolicyError(
                f"policy server refused the request ({code}): {details}", status=code, field=field
            ) from exc

    def _fetch_info(self) -> dict[str, Any]:
        return json.loads(self._call(lambda t: self._rpc("Info", self.pb2.Empty(), t), None).json)

    def health(self) -> dict[str, Any]:
        return {"status": self._call(lambda t: self._rpc("Health", self.pb2.Empty(), t), None).status}

    def metrics(self) -> dict[str, Any]:
        return json.loads(self._call(lambda t: self._rpc("Metrics", self.pb2.Empty(), t), None).json)

    def _predict(self, obs: dict, task: str | None, pa: Any, pw: Any, timeout: float) -> tuple[np.ndarray, dict]:
        pb2 = self.pb2
        request = pb2.PredictRequest(observation={k: array_to_tensor(pb2, v) for k, v in obs.items()})
        if task is not None:
            request.task = task
        if pa is not None:
            request.prefix_actions.CopyFrom(array_to_tensor(pb2, np.asarray(pa, np.float32)))
        if pw is not None:
            request.prefix_weights.CopyFrom(array_to_tensor(pb2, np.asarray(pw, np.float32)))
        response = self._rpc("Predict", request, timeout)
        t = response.timing
        timing = {
            "queue_ms": t.queue_ms,
            "inference_ms": t.inference_ms,
            "server_ms": t.server_ms,
            "batch_size": t.batch_size,
        }
        return decode_array(tensor_to_dict(response.action), "action"), timing
