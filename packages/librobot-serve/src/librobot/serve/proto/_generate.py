"""Generate ``policy_pb2.py`` / ``policy_pb2_grpc.py`` from ``policy.proto`` with grpcio-tools.

Self-contained (no librobot imports): the hatch build hook loads this file by path inside the
build environment, and ``python -m librobot.serve.proto`` calls it in a source checkout.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "policy.proto"
OUTPUTS = (HERE / "policy_pb2.py", HERE / "policy_pb2_grpc.py")


def generate(out_root: Path | None = None) -> list[Path]:
    """Compile the proto into ``out_root``/librobot/serve/proto (default: beside the .proto)."""
    from grpc_tools import protoc  # build-time dependency only

    src_root = HERE.parents[2]  # .../src, so imports read "librobot.serve.proto.policy_pb2"
    out_root = Path(out_root) if out_root is not None else src_root
    target = out_root / "librobot" / "serve" / "proto"
    target.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).resolve().parent / "_proto"  # google/protobuf/*.proto
    args = [
        "grpc_tools.protoc",
        f"-I{src_root}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(PROTO.relative_to(src_root)),
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed (exit {code}) compiling {PROTO}")
    return [target / p.name for p in OUTPUTS]
