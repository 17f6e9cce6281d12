"""What the REST and gRPC servers share: request validation against the policy's declared inputs,
authentication, the (optionally batched) policy call, timing and metrics. The transports only
decode bytes and map ``RequestError`` subclasses to their status codes.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from librobot.core.errors import ConfigError, SpecError
from librobot.core.interfaces import PolicyInterface
from librobot.core.logging import get_logger
from librobot.core.observations import canonical_observation, is_composite, state_parts_to_json
from librobot.serve import __version__
from librobot.serve.auth import TokenAuth
from librobot.serve.batching import BatchItem, DynamicBatcher
from librobot.serve.errors import DeadlineExceededError, NonFiniteActionError, OverloadedError, RequestError
from librobot.serve.metrics import ServerMetrics
from librobot.serve.protocols import (
    input_features,
    known_tasks,
    obs_horizon,
    recommended_execution,
    state_parts,
    supports_batch,
    supports_rtc,
)
from librobot.serve.rtc import pad_prefix
from librobot.serve.validation import check_finite_arrays, check_observation, check_task
from librobot.serve.wire import PredictRequest

log = get_logger("serve.service")
WAIT_GRACE_S = 0.1  # a chunk finishing just after its deadline is still delivered


@dataclass
class ServeConfig:
    max_batch_size: int = 1  # > 1 turns dynamic batching on
    batch_timeout_ms: float = 2.0  # how long the first request of a batch waits for company
    max_queue: int = 1024  # batching queue bound (503 when full)
    workers: int = 2  # without batching: threads running policy calls (few: the GIL convoys with many)
    max_request_bytes: int = 8 << 20
    auth: TokenAuth | None = None
    health_requires_auth: bool = False
    # REST: a request's headers and body must all arrive within this (slow senders get 408 and are
    # dropped); gRPC: the connection handshake.
    read_timeout_s: float = 10.0
    # REST: open connections (more are answered 503 and closed); gRPC: RPCs in progress (RESOURCE_EXHAUSTED).
    max_connections: int = 128
    # The longest a request waits for its chunk (queue + policy call) when the client's deadline is
    # later or absent: a hung policy answers 504 / DEADLINE_EXCEEDED instead of holding clients forever.
    inference_timeout_s: float = 30.0
    docs: bool = False  # REST: serve /openapi.json (behind auth); never the CDN-backed /docs pages

    def __post_init__(self) -> None:
        if (
            self.max_batch_size < 1
            or self.batch_timeout_ms < 0
            or self.max_queue < 1
            or self.max_request_bytes < 1024
            or self.workers < 1
        ):
            raise ConfigError(
                "ServeConfig: need max_batch_size >= 1, batch_timeout_ms >= 0, max_queue >= 1, "
                f"max_request_bytes >= 1024, workers >= 1; got {self.max_batch_size}, {self.batch_timeout_ms}, "
                f"{self.max_queue}, {self.max_request_bytes}, {self.workers}"
            )
        if not (self.read_timeout_s > 0 and self.inference_timeout_s > 0 and self.max_connections >= 1):
            raise ConfigError(
                "ServeConfig: need read_timeout_s > 0, inference_timeout_s > 0 and max_connections >= 1; got "
                f"{self.read_timeout_s}, {self.inference_timeout_s}, {self.max_connections}"
            )


@dataclass
class Prediction:
    action: np.ndarray  # [H, A] float32
    queue_ms: float
    inference_ms: float
    batch_size: int

    def timing(self, server_ms: float) -> dict[str, float | int]:
        return {
            "queue_ms": self.queue_ms,
            "inference_ms": self.inference_ms,
            "server_ms": server_ms,
            "batch_size": self.batch_size,
        }


def request_error(exc: SpecError) -> RequestError:
    """A SpecError whose message starts with 'field': … → RequestError for that field."""
    match = re.match(r"'([^']+)': (.*)", str(exc), re.S)
    return RequestError(match.group(2), field=match.group(1)) if match else RequestError(str(exc))


class PolicyService:
    def __init__(self, policy: PolicyInterface, config: ServeConfig | None = None) -> None:
        self.policy = policy
        self.config = config or ServeConfig()
        self.metrics = ServerMetrics()
        self.features = input_features(policy)
        self.tasks = known_tasks(policy)
        self.state_parts = state_parts(policy)  # sent as separate keys, joined before validation
        self.rtc = supports_rtc(policy)
        self.horizon, self.action_dim = int(policy.chunk_size), int(policy.action_dim)
        self._lock = nullcontext() if getattr(policy, "thread_safe", False) else threading.Lock()
        self.batcher = None
        self.executor = None
        self._queued, self._queued_lock = 0, threading.Lock()  # requests waiting for a worker
        if self.config.max_batch_size == 1:
            self.executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="librobot-policy")
        else:
            self.batcher = DynamicBatcher(
                self._run_items,
                max_batch_size=self.config.max_batch_size,
                timeout_s=self.config.batch_timeout_ms / 1e3,
                max_queue=self.config.max_queue,
            )

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    def authenticate(self, authorization: str | None, api_key: str | None) -> None:
        if self.config.auth is not None:
            self.config.auth.check(authorization, api_key)

    def info(self) -> dict[str, Any]:
        return {
            "server": f"librobot-serve {__version__}",
            "policy": type(self.policy).__name__,
            "action_dim": self.action_dim,
            "chunk_size": self.horizon,
            "obs_horizon": obs_horizon(self.policy),
            "supports_rtc": self.rtc,
            "execution": recommended_execution(self.policy),
            # a torch policy's inference precision (InferencePrecision); exports state theirs in policy.json
            "precision": getattr(getattr(self.policy, "precision", None), "name", None),
            "known_tasks": list(self.tasks) if self.tasks else None,
            "input_features": [f.to_dict() for f in self.features.values()] if self.features else None,
            # observation.state may also be sent as these parts, each under its own key
            "state_parts": state_parts_to_json(self.state_parts) if is_composite(self.state_parts) else None,
            "batching": {"max_batch_size": self.config.max_batch_size, "timeout_ms": self.config.batch_timeout_ms},
            "max_request_bytes": self.config.max_request_bytes,
        }

    # ------------------------------------------------------------------ validation
    def validate(self, request: PredictRequest) -> PredictRequest:
        """Coerce and check every field; raises RequestError naming the field."""
        try:
            sent = canonical_observation(request.observation, self.state_parts)
            obs = check_observation(self.features, sent) if self.features else check_finite_arrays(sent)
            task = check_task(request.task, self.tasks)
            prefix = weights = None
            if request.prefix_weights is not None and request.prefix_actions is None:
                raise SpecError("'prefix_weights': sent without prefix_actions")
            if request.prefix_actions is not None:
                if not self.rtc:
                    raise SpecError(
                        f"'prefix_actions': {type(self.policy).__name__} does not support real-time chunking"
                    )
                prefix, weights = pad_prefix(request.prefix_actions, request.prefix_weights, self.horizon)
                if prefix.shape[1] != self.action_dim:
                    raise SpecError(f"'prefix_actions': expected {self.action_dim} action dims, got {prefix.shape[1]}")
        except SpecError as exc:
            raise request_error(exc) from None
        return PredictRequest(obs, task, prefix, weights, request.request_id)

    # ------------------------------------------------------------------ execution
    def submit(self, request: PredictRequest, deadline: float | None = None) -> Future:
        """Queue a validated request; the Future resolves to its ``Prediction``."""
        if self.batcher is not None:
            return self.batcher.submit(request, deadline)
        with self._queued_lock:
            if self._queued >= self.config.max_queue:
                raise OverloadedError(f"request queue full ({self.config.max_queue} waiting); retry later")
            self._queued += 1
        item = BatchItem(request, deadline)
        self.executor.submit(self._run_one, item)
        return item.future

    def deadline(self, received: float, client_timeout_s: float | None = None) -> float:
        """When a request received at ``received`` (monotonic) stops waiting: the client's timeout,
        capped by the server's ``inference_timeout_s``."""
        bound = self.config.inference_timeout_s
        return received + (bound if client_timeout_s is None else min(bound, max(0.0, client_timeout_s)))

    def _timed_out(self) -> DeadlineExceededError:
        return DeadlineExceededError(
            "no action chunk before the request's deadline (the client's, capped by the server's inference "
            f"timeout of {self.config.inference_timeout_s:g} s: --inference-timeout-s); the policy may be "
            "stuck or overloaded"
        )

    def run(self, request: PredictRequest, deadline: float | None = None) -> Prediction:
        """Run a validated request and wait for its chunk, at most until ``deadline`` (default: the
        server's inference timeout from now); DeadlineExceededError after it."""
        deadline = self.deadline(time.monotonic()) if deadline is None else deadline
        future = self.submit(request, deadline)
        try:
            return future.result(max(0.0, deadline - time.monotonic()) + WAIT_GRACE_S)
        except DeadlineExceededError:
            raise
        except FutureTimeout:  # the wait ended, not the policy call: it finishes unobserved
            raise self._timed_out() from None

    async def run_async(self, request: PredictRequest, deadline: float) -> Prediction:
        """``run`` for an event loop."""
        future = asyncio.wrap_future(self.submit(request, deadline))
        try:
            # shield: a wait that gives up must not cancel the future the worker will resolve
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - time.monotonic()) + WAIT_GRACE_S)
        except DeadlineExceededError:
            raise
        except asyncio.TimeoutError:  # (distinct from TimeoutError before Python 3.11)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody reads it later
            raise self._timed_out() from None

    def _run_one(self, item: BatchItem) -> None:
        with self._queued_lock:
            self._queued -= 1
        if item.deadline is not None and time.monotonic() > item.deadline:
            item.future.set_exception(DeadlineExceededError("the request's deadline passed while it was queued"))
            return
        try:
            self._run_items([item])
        except BaseException as exc:  # delivered to this request
            if not item.future.done():
                item.future.set_exception(exc)

    def _call(self, request: PredictRequest) -> np.ndarray:
        kwargs = {}
        if request.prefix_actions is not None:
            kwargs = {"prefix_actions": request.prefix_actions, "prefix_weights": request.prefix_weights}
        with self._lock:
            chunk = self.policy.predict_chunk(request.observation, request.task, **kwargs)
        with np.errstate(over="ignore"):  # out-of-range values become inf, refused in _resolve
            return np.asarray(chunk, np.float32)

    def _call_batch(self, requests: list[PredictRequest]) -> np.ndarray:
        stacked = {k: np.stack([r.observation[k] for r in requests]) for k in requests[0].observation}
        kwargs = {}
        if any(r.prefix_actions is not None for r in requests):
            zeros_a, zeros_w = np.zeros((self.horizon, self.action_dim), np.float32), np.zeros(self.horizon, np.float32)
            kwargs = {
                "prefix_actions": np.stack(
                    [zeros_a if r.prefix_actions is None else r.prefix_actions for r in requests]
                ),
                "prefix_weights": np.stack(
                    [zeros_w if r.prefix_weights is None else r.prefix_weights for r in requests]
                ),
            }
        with self._lock:
            chunks = self.policy.predict_chunks(stacked, [r.task for r in requests], **kwargs)
        with np.errstate(over="ignore"):
            return np.asarray(chunks, np.float32)

    def _run_items(self, items: list[BatchItem]) -> None:
        """Resolve each item's future; one batched call per group of same-shaped observations."""
        groups: dict[tuple, list[BatchItem]] = {}
        for item in items:
            obs: Mapping[str, np.ndarray] = item.payload.observation
            signature = tuple(sorted((k, v.shape, v.dtype.str) for k, v in obs.items()))
            groups.setdefault(signature, []).append(item)
        for group in groups.values():
            started = time.monotonic()
            try:
                if len(group) > 1 and supports_batch(self.policy):
                    chunks = list(self._call_batch([i.payload for i in group]))
                else:
                    chunks = None
            except SpecError:
                chunks = None  # one bad item must not fail the others: retry them one by one
            if chunks is not None:
                elapsed = time.monotonic() - started
                self.metrics.batch(len(group), elapsed)
                for item, chunk in zip(group, chunks):
                    self._resolve(item, chunk, started, elapsed, len(group))
                continue
            for item in group:
                began = time.monotonic()
                try:
                    chunk = self._call(item.payload)
                except SpecError as exc:
                    item.future.set_exception(request_error(exc))
                    continue
                except Exception as exc:  # reported to this request as a server error
                    item.future.set_exception(exc)
                    continue
                elapsed = time.monotonic() - began
                self.metrics.batch(1, elapsed)
                self._resolve(item, chunk, began, elapsed, 1)

    def _resolve(self, item: BatchItem, chunk: np.ndarray, started: float, elapsed: float, size: int) -> None:
        if chunk.shape != (self.horizon, self.action_dim) and (chunk.ndim != 2 or chunk.shape[1] != self.action_dim):
            item.future.set_exception(RuntimeError(f"policy returned a chunk of shape {list(chunk.shape)}"))
            return
        if not np.isfinite(chunk).all():  # never hand NaN/inf commands to a robot
            self.metrics.event("non_finite_action")
            log.info("the policy produced non-finite actions for request %s", item.payload.request_id)
            item.future.set_exception(
                NonFiniteActionError(
                    "the policy produced non-finite actions (NaN or inf) for this observation; check that "
                    "every input lies in the range the policy was trained on (robot units, no huge values)",
                    field="observation",
                )
            )
            return
        queue_ms = (started - item.enqueued) * 1e3
        item.future.set_result(Prediction(chunk, queue_ms, elapsed * 1e3, size))
