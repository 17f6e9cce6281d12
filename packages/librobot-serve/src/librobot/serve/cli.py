"""``librobot serve``: serve a policy over REST and/or gRPC; ``librobot export``: export one.

    librobot serve --onnx export_dir --port 8000 --grpc-port 50051 --token-file tokens.txt
        [--read-timeout-s 10] [--max-connections 128] [--inference-timeout-s 30] [--docs]
    librobot serve CHECKPOINT ...        # an export directory (policy.onnx + policy.json), a torch
                                         # policy folder (save_pretrained) or a training run folder
    librobot export CHECKPOINT --format onnx|torchscript [--fp16] [--int8] [--tasks T ...] [--out DIR]

Policy sources are resolved by ``load_policy``; a torch checkpoint goes through
``CHECKPOINT_LOADERS`` (the first is the policy-folder loader below, which needs librobot-models).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from librobot.core.errors import ConfigError
from librobot.core.extras import is_available
from librobot.core.hardware import PRECISIONS, check_precision
from librobot.core.interfaces import PolicyInterface
from librobot.core.logging import get_logger

log = get_logger("serve.cli")

POLICY_FORMAT = "librobot-policy"  # config.json of a save_pretrained policy folder


def policy_folder(path: Path) -> Path | None:
    """``path`` itself or ``path/policy`` (a training run) when it holds a torch policy folder."""
    for candidate in (path, path / "policy"):
        config = candidate / "config.json"
        if config.is_file():
            try:
                if json.loads(config.read_text()).get("format") == POLICY_FORMAT:
                    return candidate
            except (OSError, ValueError, AttributeError):
                continue
    return None


def load_torch_policy(
    path: Path, *, trust_remote_code: bool = False, precision: str = "auto"
) -> PolicyInterface | None:
    """A ``TorchPolicy`` for a policy folder or run folder; None for anything else."""
    folder = policy_folder(path)
    if folder is None:
        return None
    if not is_available("torch") or not is_available("librobot.models"):
        from librobot.core.errors import MissingExtraError

        raise MissingExtraError(
            f"{folder} is a torch policy folder; serving it needs torch and librobot-models: "
            "pip install 'librobot-serve[export]' (or export it: `librobot export CHECKPOINT --format onnx`)"
        )
    from librobot.serve.torch_policy import TorchPolicy

    return TorchPolicy.from_pretrained(folder, trust_remote_code=trust_remote_code, precision=precision)


# Loaders for torch checkpoint directories: each gets the directory and returns a PolicyInterface,
# or None when the directory is not its kind; the first non-None answer wins. Other packages may
# append theirs (e.g. a training run layout of their own); ``--trust-remote-code`` reaches a loader as
# the keyword ``trust_remote_code=True`` and ``--precision`` as ``precision=`` (each only when given).
CHECKPOINT_LOADERS: list[Callable[[Path], PolicyInterface | None]] = [load_torch_policy]


def load_policy(
    checkpoint: str | None = None,
    *,
    onnx: str | None = None,
    seed: int | None = 0,
    task: str | None = None,
    trust_remote_code: bool = False,
    precision: str = "auto",
) -> PolicyInterface:
    """The policy to serve, from ``--onnx PATH`` or a CHECKPOINT directory. ``precision`` applies to
    torch policies ("auto": bf16 where the CPU/GPU runs it natively); an export runs as exported."""
    if (checkpoint is None) == (onnx is None):
        raise ConfigError("give exactly one policy source: a CHECKPOINT directory or --onnx PATH")
    check_precision(precision)
    path = Path(onnx if onnx is not None else checkpoint)  # type: ignore[arg-type]
    if onnx is not None or path.suffix == ".onnx" or (path / "policy.json").is_file():  # an ONNX export
        if onnx is None and not path.exists():
            raise ConfigError(f"checkpoint {path} does not exist")
        if precision != "auto":
            log.warning("--precision %s ignored: an ONNX export runs in the precision it was exported in", precision)
        from librobot.serve.onnx_policy import OnnxPolicy

        return OnnxPolicy(path, seed=seed)
    if not path.exists():
        raise ConfigError(f"checkpoint {path} does not exist")
    options: dict[str, Any] = {"trust_remote_code": True} if trust_remote_code else {}
    if precision != "auto":
        options["precision"] = precision
    for loader in CHECKPOINT_LOADERS:
        policy = loader(path, **options)
        if policy is not None:
            if task is not None and hasattr(policy, "task"):
                policy.task = task  # the default instruction of an in-process torch policy
            return policy
    raise ConfigError(
        f"{path} is neither an ONNX export (policy.json), a torch policy folder (config.json written by "
        "save_pretrained) nor a training run (policy/). Serve a policy folder, or export one with "
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

    policy = load_policy(
        args.checkpoint,
        onnx=args.onnx,
        seed=args.seed,
        task=getattr(args, "task", None),
        trust_remote_code=getattr(args, "trust_remote_code", False),
        precision=getattr(args, "precision", "auto"),
    )
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
        read_timeout_s=args.read_timeout_s,
        max_connections=args.max_connections,
        inference_timeout_s=args.inference_timeout_s,
        docs=args.docs,
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
    p.add_argument(
        "checkpoint", nargs="?", help="an export folder (policy.json), a torch policy folder or a training run folder"
    )
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
    p.add_argument(
        "--read-timeout-s", type=float, default=10.0, help="REST: a request must arrive whole within this (else 408)"
    )
    p.add_argument(
        "--max-connections", type=int, default=128, help="REST: open connections (more: 503); gRPC: RPCs in progress"
    )
    p.add_argument(
        "--inference-timeout-s", type=float, default=30.0, help="longest wait for a chunk (then 504), any deadline"
    )
    p.add_argument("--docs", action="store_true", help="REST: serve /openapi.json (behind the same auth)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    p.add_argument("--task", help="torch policies: the instruction used when a request carries none")
    add_trust_remote_code_option(p)
    add_precision_option(p)
    p.set_defaults(func=_cmd_serve)
    add_export_command(subparsers)


def add_trust_remote_code_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="torch policy folders: import the 'module:attr' components the folder names (only for folders you "
        "trust: a folder is data, and without this flag such a reference is refused)",
    )


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="torch policies: auto (default) runs bf16 where the CPU has AMX/AVX512-BF16 or the GPU has bf16, "
        "else fp32 (`librobot info` shows which); fp32 is the reference",
    )


def _cmd_export(args: argparse.Namespace) -> int:
    from librobot.serve.export import export_policy

    source = Path(args.checkpoint)
    out = Path(args.out) if args.out else source.with_name(f"{source.name}-{args.format}")
    result = export_policy(
        source,
        out,
        format=args.format,
        fp16=args.fp16,
        int8=args.int8,
        tasks=args.tasks or [],
        cameras=args.cameras,
        image_size=tuple(args.image_size) if args.image_size else None,
        history=args.history,
        max_task_tokens=args.max_task_tokens,
        rtc=not args.no_rtc,
        tolerance=args.tolerance,
        trust_remote_code=args.trust_remote_code,
    )
    report = result.report
    summary = {
        "export": str(result.path),
        "framework": report["framework"],
        "format": report["export_format"],
        "precision": report["precision"],
        "inputs": report["inputs"],
        "parity_vs_torch": {k: v for k, v in report["parity_vs_torch"].items() if k.startswith("max")},
    }
    if "int8_vs_fp32" in report:
        summary["int8_vs_fp32"] = report["int8_vs_fp32"]
    print(json.dumps(summary, indent=2))
    return 0


def add_export_command(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a policy to ONNX or TorchScript",
        description="Export a policy's whole inference path (normalisation, backbone, the action head's whole "
        "sampling loop, un-normalisation) for one observation, verify it against torch on random inputs, and "
        "write it atomically. Instructions are tokenised now, for --tasks.",
    )
    p.add_argument("checkpoint", help="a policy folder (save_pretrained) or a training run folder (uses <run>/policy)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--fp16", action="store_true", help="float16 weights and compute (GPU targets such as the Orin)")
    p.add_argument("--int8", action="store_true", help="dynamic int8 quantisation (CPU targets); its cost is measured")
    p.add_argument("--tasks", nargs="+", metavar="TEXT", help="the instructions the policy will be given")
    p.add_argument("--out", help="the export folder to create (default: CHECKPOINT-FORMAT beside it)")
    p.add_argument("--cameras", nargs="+", help="camera names, for policies trained without a fixed camera list")
    p.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), help="input image size (default: native)")
    p.add_argument(
        "--history", type=int, default=None, help="observation frames per input (default: the policy's training window)"
    )
    p.add_argument("--max-task-tokens", type=int, help="prompt ids the graph takes (room for tasks added later)")
    p.add_argument("--no-rtc", action="store_true", help="leave out the real-time-chunking inputs")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max parity error (normalised units) to accept")
    add_trust_remote_code_option(p)
    p.set_defaults(func=_cmd_export)
