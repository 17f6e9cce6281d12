"""Latency recording shared by the runtime (per control step) and the servers (per request):
exact count/mean/max over everything, percentiles over a bounded window of recent samples (so a
long-running server's memory stays flat), and a cumulative histogram with fixed bucket edges."""

from __future__ import annotations

import bisect
import threading
from collections import deque
from typing import Any

import numpy as np

# Bucket upper edges in milliseconds (Prometheus-style "le"), chosen for control loops and RPCs.
DEFAULT_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class LatencyRecorder:
    def __init__(self, window: int = 10_000, buckets_ms: tuple[float, ...] = DEFAULT_BUCKETS_MS) -> None:
        self._window: deque[float] = deque(maxlen=window)
        self._edges = tuple(float(b) for b in buckets_ms)
        self._counts = [0] * (len(self._edges) + 1)  # last: +Inf
        self._lock = threading.Lock()
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def record(self, seconds: float) -> None:
        ms = seconds * 1e3
        with self._lock:
            self._window.append(seconds)
            self._counts[bisect.bisect_left(self._edges, ms)] += 1
            self.count += 1
            self.total_s += seconds
            self.max_s = max(self.max_s, seconds)

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) in seconds over the recent window; 0 when empty."""
        with self._lock:
            data = np.fromiter(self._window, float, len(self._window))
        return float(np.percentile(data, q)) if data.size else 0.0

    def summary(self) -> dict[str, Any]:
        with self._lock:
            data = np.fromiter(self._window, float, len(self._window))
            counts = list(self._counts)
            count, total, peak = self.count, self.total_s, self.max_s
        p = np.percentile(data, [50, 90, 99]) * 1e3 if data.size else np.zeros(3)
        cumulative = np.cumsum(counts).tolist()
        return {
            "count": count,
            "mean_ms": total / count * 1e3 if count else 0.0,
            "p50_ms": float(p[0]),
            "p90_ms": float(p[1]),
            "p99_ms": float(p[2]),
            "max_ms": peak * 1e3,
            "histogram_ms": {**{str(e): c for e, c in zip(self._edges, cumulative)}, "+Inf": cumulative[-1]},
        }
