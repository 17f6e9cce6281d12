"""The gRPC contract (``policy.proto``) and the code generated from it at build time.

``load()`` returns the generated modules, or raises an error saying how to produce them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from librobot.core.errors import MissingExtraError
from librobot.core.extras import require


def load() -> tuple[ModuleType, ModuleType]:
    """(policy_pb2, policy_pb2_grpc)."""
    require("grpc", extra="librobot-serve[grpc]", purpose="the gRPC policy server and client")
    require("google.protobuf", extra="librobot-serve[grpc]", purpose="the gRPC policy server and client")
    try:
        pb2 = importlib.import_module("librobot.serve.proto.policy_pb2")
        pb2_grpc = importlib.import_module("librobot.serve.proto.policy_pb2_grpc")
    except Exception as exc:  # a missing file, or code generated for a newer grpcio/protobuf
        raise MissingExtraError(
            f"the gRPC code generated from librobot/serve/proto/policy.proto is missing or does not match the "
            f"installed grpcio/protobuf ({type(exc).__name__}: {exc}). It is generated when librobot-serve is built: "
            "reinstall it (`pip install -e packages/librobot-serve` in a checkout), or regenerate it in place with "
            "`python -m librobot.serve.proto` (uses the installed grpcio-tools)."
        ) from exc
    return pb2, pb2_grpc
