"""Policy → ONNX with the dynamo exporter (``torch.export`` + ``torch.onnx``), then verified.

Steps: ``torch.export.export`` of ``PolicyGraph`` (every sampling step unrolled), conversion with
``torch.onnx.export(..., dynamo=True, optimize=False)``, then a light clean-up (constant folding,
dead nodes, shared initialisers, common subexpressions). The exporter's full pattern rewriter is
left out: on an unrolled 10-step sampler it took minutes here, and onnxruntime applies its own
fusions when it loads the graph. ``fp16`` converts weights and compute to float16 with
onnxruntime's converter, keeping float32 inputs/outputs (the sidecar is unchanged).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from librobot.serve.export.errors import ExportError
from librobot.serve.export.graph import PolicyGraph, graph_inputs, random_inputs
from librobot.serve.export.layout import OUTPUT, GraphLayout

EXTERNAL_DATA_BYTES = 1 << 30  # above this the weights go to policy.onnx.data (protobuf's 2 GB limit)
# the exporter warns once per torchvision op it cannot register; the project has no torchvision
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


def example_inputs(layout: GraphLayout) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(0)
    task = next(iter(layout.task.table)) if layout.task is not None else None
    noise = rng.standard_normal((1, layout.horizon, layout.action_dim)).astype(np.float32)
    feeds = graph_inputs(layout, random_inputs(layout, rng), task, noise)
    return tuple(torch.from_numpy(feeds[name]) for name in layout.input_names())


def _first_line(exc: BaseException) -> str:
    """The informative line of an exporter error (the converter's own summary buries the op name)."""
    text = "\n".join(str(e) for e in (exc, exc.__cause__) if e is not None)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for key in ("No ONNX function found", "Error when translating node", "Could not guard on data-dependent"):
        hit = next((line for line in lines if key in line), None)
        if hit:
            return hit
    return lines[0] if lines else type(exc).__name__


def trace(model: Any, layout: GraphLayout) -> Any:
    """``torch.export`` of the whole inference path; errors name the framework and the failing op."""
    graph = PolicyGraph(model, layout).eval()
    args = example_inputs(layout)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(graph, args)
    except Exception as exc:
        raise ExportError(
            f"{layout.framework}: torch.export could not capture the inference path: {type(exc).__name__}: "
            f"{_first_line(exc)}. Data-dependent Python control flow on tensor values (if/bool/.item()) in the "
            "inference path must become tensor ops or be skipped while exporting (librobot.models' `exporting()`)"
        ) from exc


def _light_passes(model: Any) -> None:
    import onnx_ir as ir
    import onnx_ir.passes.common as common
    from onnxscript.optimizer import _constant_folding

    ir.passes.Sequential(
        common.InlinePass(),
        _constant_folding.FoldConstantsPass(shape_inference=True, input_size_limit=8192, output_size_limit=1 << 20),
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
        common.RemoveUnusedNodesPass(),
    )(model)


def _strip_debug_metadata(model: Any) -> None:
    """Drop the exporter's per-node debug records (Python stack traces with this machine's absolute
    source paths, module names, FX node text): ~70% of a small graph's bytes, a leak of build paths
    into what ships to robots, and a checksum that changed whenever a source line moved."""
    import onnx_ir as ir

    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        node.metadata_props.clear()


def to_onnx(program: Any, layout: GraphLayout, path: Path) -> Path:
    """Convert an exported program and save it at ``path`` (weights inline below 1 GiB)."""
    try:
        # the exporter prints progress lines; keep stdout clean for callers that print JSON
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program, dynamo=True, optimize=False, input_names=layout.input_names(), output_names=[OUTPUT]
            )
    except Exception as exc:
        raise ExportError(
            f"{layout.framework}: the ONNX conversion failed: {_first_line(exc)} (an aten op without an ONNX "
            "translation must be rewritten with ops that have one)"
        ) from exc
    _light_passes(onnx_program.model)
    _strip_debug_metadata(onnx_program.model)
    weights = sum(v.const_value.nbytes for v in onnx_program.model.graph.initializers.values() if v.const_value)
    onnx_program.save(str(path), external_data=weights > EXTERNAL_DATA_BYTES)
    return path


def session(path: Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # the fp16 graph's Cast warnings are expected
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def runner(sess: Any) -> Any:
    """feeds → actions [1, H, A] through an onnxruntime session."""
    names = {i.name for i in sess.get_inputs()}

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        (out,) = sess.run([OUTPUT], {k: v for k, v in feeds.items() if k in names})
        return out

    return run
