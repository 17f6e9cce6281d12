"""Server metrics shared by the REST and gRPC front ends: request counts by transport and outcome,
end-to-end latency (histogram + percentiles), policy-call latency, batch sizes, requests in flight,
and events that are neither a request's answer nor a server fault (``non_finite_action``: the policy
produced NaN/inf for an observation, answered 422).
``snapshot()`` is the JSON of the metrics endpoints; ``prometheus()`` the text exposition format."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from librobot.serve.stats import LatencyRecorder


class ServerMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests: Counter[tuple[str, str, str]] = Counter()  # (transport, method, outcome)
        self.batch_sizes: Counter[int] = Counter()
        self.events: Counter[str] = Counter()
        self.latency = LatencyRecorder()  # request received → response ready (successful predicts)
        self.inference = LatencyRecorder()  # one policy call (a whole batch)
        self.in_flight = 0

    def count(self, transport: str, method: str, outcome: str | int) -> None:
        with self._lock:
            self.requests[(transport, method, str(outcome))] += 1

    def event(self, name: str) -> None:
        with self._lock:
            self.events[name] += 1

    def batch(self, size: int, seconds: float) -> None:
        with self._lock:
            self.batch_sizes[size] += 1
        self.inference.record(seconds)

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            requests = [
                {"transport": t, "method": m, "outcome": o, "count": c}
                for (t, m, o), c in sorted(self.requests.items())
            ]
            batches = {str(k): v for k, v in sorted(self.batch_sizes.items())}
            events = dict(sorted(self.events.items()))
            in_flight = self.in_flight
        return {
            "uptime_s": time.time() - self.started,
            "requests": requests,
            "in_flight": in_flight,
            "latency": self.latency.summary(),
            "inference": self.inference.summary(),
            "batch_sizes": batches,
            "events": events,
        }

    def prometheus(self) -> str:
        snap = self.snapshot()
        lines = ["# TYPE librobot_requests_total counter"]
        for r in snap["requests"]:
            lines.append(
                f'librobot_requests_total{{transport="{r["transport"]}",method="{r["method"]}",outcome="{r["outcome"]}"}} {r["count"]}'
            )
        for name, summary in (("request", snap["latency"]), ("inference", snap["inference"])):
            lines.append(f"# TYPE librobot_{name}_latency_ms histogram")
            for edge, count in summary["histogram_ms"].items():
                lines.append(f'librobot_{name}_latency_ms_bucket{{le="{edge}"}} {count}')
            lines.append(f"librobot_{name}_latency_ms_sum {summary['mean_ms'] * summary['count']:.6f}")
            lines.append(f"librobot_{name}_latency_ms_count {summary['count']}")
        lines.append("# TYPE librobot_events_total counter")
        for name, count in snap["events"].items():
            lines.append(f'librobot_events_total{{event="{name}"}} {count}')
        lines.append("# TYPE librobot_in_flight gauge")
        lines.append(f"librobot_in_flight {snap['in_flight']}")
        return "\n".join(lines) + "\n"
