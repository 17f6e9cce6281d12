"""Hatch build hook: generate the gRPC Python code from src/librobot/serve/proto/policy.proto with
grpcio-tools at build time (wheel and editable builds), so generated code is never checked in and
always matches the .proto. The generated files are gitignored, hence declared as artifacts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ProtoBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        script = root / "src" / "librobot" / "serve" / "proto" / "_generate.py"
        spec = importlib.util.spec_from_file_location("_librobot_serve_proto_generate", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            outputs = module.generate()
        except ImportError as exc:
            raise RuntimeError(
                "building librobot-serve needs grpcio-tools to generate the gRPC code "
                f"({exc}); install it in the build environment or build with isolation"
            ) from exc
        build_data["artifacts"].extend(str(p.relative_to(root)) for p in outputs)
