"""Dynamic batching: concurrent requests are queued, and one worker takes up to ``max_batch_size``
of them (waiting at most ``timeout_s`` after the first arrives) for one batched policy call.

The queue is bounded: when it is full, ``submit`` raises ``OverloadedError`` (503 / UNAVAILABLE)
at once instead of letting latency grow without limit; clients retry with backoff. Requests whose
deadline passed while they waited are answered with ``DeadlineExceededError`` without running.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from librobot.core.logging import get_logger
from librobot.serve.errors import DeadlineExceededError, OverloadedError

log = get_logger("serve.batching")


@dataclass
class BatchItem:
    payload: Any
    deadline: float | None  # time.monotonic() value
    enqueued: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


class DynamicBatcher:
    def __init__(
        self,
        run_batch: Callable[[list[BatchItem]], None],
        *,
        max_batch_size: int,
        timeout_s: float,
        max_queue: int = 1024,
    ) -> None:
        """``run_batch(items)`` must resolve every item's future (result or exception)."""
        self._run_batch = run_batch
        self.max_batch_size = int(max_batch_size)
        self.timeout_s = float(timeout_s)
        self._queue: queue.Queue[BatchItem | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="librobot-batcher", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, payload: Any, deadline: float | None = None) -> Future:
        if self._closed:
            raise OverloadedError("the server is shutting down")
        item = BatchItem(payload, deadline)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            raise OverloadedError(f"request queue full ({self._queue.maxsize} waiting); retry later") from None
        return item.future

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=5.0)

    def _collect(self, first: BatchItem) -> list[BatchItem]:
        batch = [first]
        until = time.monotonic() + self.timeout_s
        while len(batch) < self.max_batch_size:
            remaining = until - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # close(): finish this batch, then stop
                self._queue.put(None)
                break
            batch.append(item)
        return batch

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._collect(first)
            now = time.monotonic()
            live = []
            for item in batch:
                if item.deadline is not None and now > item.deadline:
                    item.future.set_exception(
                        DeadlineExceededError("the request's deadline passed while it was queued")
                    )
                else:
                    live.append(item)
            if not live:
                continue
            try:
                self._run_batch(live)
            except BaseException as exc:  # never let the worker die: fail the batch instead
                log.exception("batch of %d failed", len(live))
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(exc)
