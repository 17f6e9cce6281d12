"""Helpers the benchmark scripts share (run as ``python benchmarks/NAME.py``, which puts this folder
on the import path)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median / 90th-percentile wall time and median process CPU time per call, in ms (CPU time is
    the steadier figure on a shared machine: waiting for a core does not count)."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        wall.append((time.perf_counter() - w0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    wall.sort()
    return {
        "median_ms": round(statistics.median(wall), 3),
        "p90_ms": round(wall[int(0.9 * (len(wall) - 1))], 3),
        "cpu_median_ms": round(statistics.median(cpu), 3),
        "repeats": repeats,
    }


def emit_json(doc: dict, out: str | None, *, indent: int = 2) -> None:
    """Print the result document, and also write it to ``out`` when given."""
    text = json.dumps(doc, indent=indent)
    print(text)
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
