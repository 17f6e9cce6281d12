"""``librobot serve``: serve a policy over REST and/or gRPC.

    librobot serve --onnx export_dir --port 8000 --grpc-port 50051 --token-file tokens.txt
    librobot serve CHECKPOINT ...        # an export directory (policy.onnx + policy.json) today;
                                         # torch checkpoints once the frameworks provide from_pretrained

Policy sources are resolved by ``load_policy``; a torch checkpoint goes through
``CHECKPOINT_LOADERS`` (the hook the frameworks' ``from_pretrained`` plugs into).
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from librobot.core.errors import ConfigError
from librobot.core.interfaces import PolicyInterface
from librobot.core.logging import get_logger

log = get_logger("serve.cli")

# Loaders for torch checkpoint directories: each gets the directory and returns a PolicyInterface,
# or None when the directory is not its kind. librobot-models/train append theirs (e.g. one that
# calls the framework's from_pretrained and wraps it); the first non-None answer wins.
CHECKPOINT_LOADERS: list[Callable[[Path], PolicyInterface | None]] = []


def load_policy(checkpoint: str | None = None, *, onnx: str | None = None, seed: int | None = 0) -> PolicyInterface:
    """The policy to serve, from ``--onnx PATH`` or a CHECKPOINT directory."""
    if (checkpoint is None) == (onnx is None):
        raise ConfigError("give exactly one policy source: a CHECKPOINT directory or --onnx PATH")
    if onnx is not None:
        from librobot.serve.onnx_policy import OnnxPolicy

        return OnnxPolicy(onnx, seed=seed)
    path = Path(checkpoint)
    if not path.exists():
        raise ConfigError(f"checkpoint {path} does not exist")
    if path.suffix == ".onnx" or (path / "policy.json").is_file():  # an ONNX export directory
        from librobot.serve.onnx_policy import OnnxPolicy

        return OnnxPolicy(path, seed=seed)
    for loader in CHECKPOINT_LOADERS:
        policy = loader(path)
        if policy is not None:
            return policy
    raise ConfigError(
        f"{path} is not an ONNX export, and no installed package can serve it as a torch checkpoint "
        "(serving torch checkpoints needs librobot-models' from_pretrained). Export it with "
        "`librobot export CHECKPOINT --format onnx` and serve the export, or pass --onnx PATH."
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def build_servers(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """(service, [servers]) from parsed arguments; servers are created but not started."""
    from librobot.serve.auth import load_token_file
    from librobot.serve.service import PolicyService, ServeConfig

    policy = load_policy(args.checkpoint, onnx=args.onnx, seed=args.seed)
    auth = load_token_file(args.token_file) if args.token_file else None
    if auth is None and not _is_loopback(args.host):
        log.warning(
            "serving on %s without authentication: anyone who can reach it can drive the policy (use --token-file)",
            args.host,
        )
    config = ServeConfig(
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        max_request_bytes=args.max_request_bytes,
        workers=args.workers,
        auth=auth,
    )
    service = PolicyService(policy, config)
    servers: list[Any] = []
    if not args.no_rest:
        from librobot.serve.rest import RestServer

        servers.append(RestServer(service, args.host, args.port))
    if args.grpc_port is not None:
        from librobot.serve.grpc_server import GrpcServer

        servers.append(GrpcServer(service, args.host, args.grpc_port))
    if not servers:
        raise ConfigError("nothing to serve: --no-rest without --grpc-port")
    return service, servers


def _cmd_serve(args: argparse.Namespace) -> int:
    service, servers = build_servers(args)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for server in servers:
            server.start()
            where = getattr(server, "url", None) or f"grpc://{server.target}"
            log.info("serving %s on %s", type(service.policy).__name__, where)
        stop.wait()
    finally:
        for server in servers:
            server.stop()
        service.close()
    return 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="serve a policy over REST and gRPC")
    p.add_argument("checkpoint", nargs="?", help="an exported policy directory (or, once wired, a torch checkpoint)")
    p.add_argument("--onnx", metavar="PATH", help="an exported ONNX policy (directory, .onnx, or its policy.json)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="REST port (0: any free port)")
    p.add_argument("--no-rest", action="store_true", help="serve gRPC only")
    p.add_argument("--grpc-port", type=int, default=None, help="gRPC port (default: no gRPC server)")
    p.add_argument("--token-file", help="file with accepted bearer tokens / API keys, one per line")
    p.add_argument("--max-batch-size", type=int, default=1, help="dynamic batching: requests per policy call (1: off)")
    p.add_argument("--batch-timeout-ms", type=float, default=2.0, help="dynamic batching: wait for a batch to fill")
    p.add_argument("--workers", type=int, default=2, help="without batching: threads running policy calls")
    p.add_argument("--max-request-bytes", type=int, default=8 << 20, help="largest accepted request body")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    p.set_defaults(func=_cmd_serve)
