"""Connection limits for the REST server, at the HTTP protocol level where an ASGI app cannot act.

uvicorn (h11) waits without bound for a request's headers and body, and ``limit_concurrency`` only
answers 503 once a request's headers are in, so clients that connect and trickle bytes each hold a
connection (and a file descriptor) for as long as they like. ``guarded_h11_protocol`` returns an
``H11Protocol`` subclass that

- closes a connection over ``max_connections`` at once, after a 503 (Retry-After: 1);
- gives each request ``read_timeout_s`` from its first byte (or from the connection's opening) to
  its last body byte; a request still incomplete then is answered 408 and its connection closed.
  The app sees a client disconnect; idle keep-alive connections stay under uvicorn's own timeout.

It relies on H11Protocol's ``cycle``/``connections`` attributes (stable across uvicorn releases
since 0.2x); the subclass is what ``uvicorn.Config(http=...)`` accepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def raw_response(status: int, reason: str, message: str, extra: str = "") -> bytes:
    """A complete HTTP/1.1 error response that closes the connection, with the servers' JSON error."""
    body = json.dumps({"error": {"status": status, "field": None, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"connection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


def guarded_h11_protocol(
    *, read_timeout_s: float, max_connections: int, on_event: Callable[[str], None] = lambda name: None
) -> type:
    """The protocol class; ``on_event("read_timeout" | "over_limit")`` is called for each drop."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    refused = raw_response(
        503,
        "Service Unavailable",
        f"the server has {max_connections} connections open, its limit (--max-connections); retry with backoff",
        "retry-after: 1\r\n",
    )
    timed_out = raw_response(
        408,
        "Request Timeout",
        f"the request did not arrive whole within the server's read timeout of {read_timeout_s:g} s "
        "(--read-timeout-s); send headers and body without pauses",
    )

    class GuardedH11Protocol(H11Protocol):
        _timer: Any = None
        _refused = False

        def connection_made(self, transport: Any) -> None:
            if len(self.connections) >= max_connections:
                self._refused, self.transport = True, transport
                on_event("over_limit")
                transport.write(refused)
                transport.close()
                return
            super().connection_made(transport)
            self._arm()  # a connection that never sends a byte is dropped too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if not self._refused:
                super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._timer is None and self._between_requests():  # this byte starts a new request
                self._arm()
            super().data_received(data)
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                if not cycle.more_body:
                    self._disarm()  # the whole request is in; the app's time is bounded elsewhere
                elif self._timer is None:  # a pipelined request's headers arrived with the last one
                    self._arm()

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._timer = self.loop.call_later(read_timeout_s, self._read_timed_out)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _read_timed_out(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            on_event("read_timeout")
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's receive() now reports a disconnect
                cycle.message_event.set()
                if cycle.response_started:  # mid-response: nothing sensible to add
                    self.transport.close()
                    return
            self.transport.write(timed_out)
            self.transport.close()

    return GuardedH11Protocol
