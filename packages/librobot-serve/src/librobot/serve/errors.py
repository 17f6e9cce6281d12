"""Errors raised by the serving stack. Each carries what a transport needs to answer with it.

``RequestError`` is the boundary error: ``field`` names the offending part of the request and
``status`` / ``grpc_code`` are what the REST and gRPC servers send back, so both transports map a
bad request to the same answer.
"""

from __future__ import annotations

from librobot.core.errors import CheckpointError, ConfigError, LibroBotError


class RequestError(LibroBotError, ValueError):
    """A request the server refuses (malformed, invalid field, unauthenticated, too large)."""

    status = 422
    grpc_code = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"'{field}': {message}" if field else message)
        self.field = field
        self.detail = message


class MalformedRequestError(RequestError):
    """The body could not be decoded at all (not msgpack, not a tensor encoding)."""

    status = 400


class UnauthenticatedError(RequestError):
    status = 401
    grpc_code = "UNAUTHENTICATED"


class PayloadTooLargeError(RequestError):
    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class UnsupportedMediaTypeError(RequestError):
    status = 415


class OverloadedError(RequestError):
    """The server's queue is full: a transient condition, retried by the client."""

    status = 503
    grpc_code = "UNAVAILABLE"


class NonFiniteActionError(RequestError):
    """The policy produced NaN/inf actions for this observation: answered 422 / INVALID_ARGUMENT, since
    the usual cause is an input far outside the range the policy was trained on."""


class DeadlineExceededError(LibroBotError, TimeoutError):
    """A request's deadline passed (client side: all retries spent; server side: still queued)."""

    status = 504
    grpc_code = "DEADLINE_EXCEEDED"


class RemotePolicyError(LibroBotError, RuntimeError):
    """The policy server answered with an error the client does not retry."""

    def __init__(self, message: str, *, status: int | str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


# ---------------------------------------------------------------------------- exported policies
class PolicyArtifactError(CheckpointError):
    """An exported policy (graph + ``policy.json`` sidecar) that cannot be loaded as it is."""


class SidecarError(PolicyArtifactError, ConfigError):
    """The sidecar is not a valid document: not JSON, wrong types, missing keys, a path leaving the folder."""


class MissingChecksumError(PolicyArtifactError):
    """The sidecar records no ``model_sha256``: the export is incomplete."""


class CorruptModelError(PolicyArtifactError):
    """The model file cannot be loaded by onnxruntime (corrupt, truncated, not a graph)."""


class GraphMismatchError(PolicyArtifactError):
    """The sidecar's inputs or output disagree with the graph's (names, ranks, fixed dims, dtypes)."""
