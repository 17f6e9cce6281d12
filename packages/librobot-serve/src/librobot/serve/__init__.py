"""LibroBot VLA serving: policy runtime (chunk execution, ensembling, real-time chunking), ONNX
runtime policy and int8 quantisation, REST and gRPC servers, client.

Importing this package imports neither torch nor any optional dependency; names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "PolicyRuntime": "runtime",
    "RuntimeConfig": "runtime",
    "RuntimeStats": "runtime",
    "TemporalEnsembler": "chunking",
    "FakeClock": "clock",
    "MonotonicClock": "clock",
    "SimulatedLatencyExecutor": "clock",
    "InlineExecutor": "clock",
    "RealTimeChunkingPolicy": "protocols",
    "SafetyFilter": "protocols",
    "prefix_weights": "rtc",
    "guided_velocity": "rtc",
    "inpaint_denoised": "rtc",
    "rtc_flow_sample": "rtc",
    "OnnxPolicy": "onnx_policy",
    "OnnxPolicySpec": "sidecar",
    "quantize_int8": "quantize",
    "PolicyService": "service",
    "ServeConfig": "service",
    "RestServer": "rest",
    "GrpcServer": "grpc_server",
    "RestPolicyClient": "client",
    "GrpcPolicyClient": "client",
    "RetryPolicy": "client",
    "TokenAuth": "auth",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'librobot.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(f"librobot.serve.{module}"), name)
