"""Whether torch is capturing a graph right now (torch.export / ONNX export, jit tracing,
torch.compile). Data-dependent checks and value-based shortcuts are skipped then: a captured
graph cannot branch on tensor values, and it must contain the full computation."""

from __future__ import annotations

import torch


def exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or bool(is_exporting and is_exporting())
