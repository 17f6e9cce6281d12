"""Policy → TorchScript by ``torch.jit.trace`` of the same ``PolicyGraph`` the ONNX export uses.

Tracing records one run: Python control flow on tensor values is frozen into the trace. The
frameworks skip their data-dependent checks while tracing, and the trace is then verified against
``predict_action`` on fresh inputs and noise, so a frozen branch fails the export instead of
shipping. A framework that does not trace gets an ``ExportError`` naming it and the failing op.

A TorchScript archive (``policy.pt``) is torch's own zip format; its module structure is stored with
Python's pickle protocol, so load archives only from sources you trust (the ONNX export has no such
caveat). ``torch.jit.load(dir / "policy.pt")(*inputs)`` takes the inputs ``policy.json`` lists.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from librobot.serve.export.errors import ExportError
from librobot.serve.export.graph import PolicyGraph
from librobot.serve.export.layout import GraphLayout
from librobot.serve.export.onnx_export import example_inputs


def trace(model: Any, layout: GraphLayout) -> torch.jit.ScriptModule:
    graph = PolicyGraph(model, layout).eval()
    args = example_inputs(layout)
    caught: list[str] = []
    try:
        with torch.no_grad(), warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", torch.jit.TracerWarning)
            traced = torch.jit.trace(graph, args, check_trace=False, strict=False)
            caught = [
                f"{w.filename}:{w.lineno}: {w.message}" for w in seen if issubclass(w.category, torch.jit.TracerWarning)
            ]
    except Exception as exc:
        line = next((s.strip() for s in str(exc).splitlines() if s.strip()), type(exc).__name__)
        raise ExportError(f"{layout.framework}: torch.jit.trace failed: {type(exc).__name__}: {line}") from exc
    traced.tracer_warnings = caught  # type: ignore[attr-defined]  # shown if verification fails
    return traced


def save(module: torch.jit.ScriptModule, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 marks TorchScript deprecated
        torch.jit.save(module, str(path))
    return path


def runner(module: Any, layout: GraphLayout) -> Any:
    names = layout.input_names()

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return module(*(torch.from_numpy(feeds[n]) for n in names)).numpy()

    return run
