"""Whole-policy export: any registered framework → ONNX (dynamo exporter) or TorchScript.

    librobot export CHECKPOINT --format onnx --tasks "pick up the cube" [--fp16 | --int8] [--out DIR]

    from librobot.serve.export import export_policy
    export_policy("runs/act/policy", "exports/act", tasks=["pick up the cube"])

What is exported: the whole inference path of ``predict_action`` — state normalisation, the
backbone (image float conversion/resizing/normalisation, the VLM prefix), the action head with its
whole sampling loop unrolled (flow/diffusion steps; greedy token decoding of the fixed H·A tokens
for OpenVLA/RT-2-style), and un-normalisation — as one graph for one observation (batch 1).

Inputs (``layout.py``): state, one image per camera, the instruction as prompt ids + mask (tokenised
at export time for ``--tasks``, the sidecar's ``task.table``; see ``tasks.py`` to tokenise others
where the backbone tokenizer is available), the sampler's initial noise for stochastic policies, and
real-time-chunking prefix inputs for flow policies that take guidance (π0-style).

Export folder (written atomically; nothing appears unless the export verified):

    policy.onnx     the graph (fp32; fp16 weights/compute with --fp16; dynamic int8 with --int8)
    policy.json     the sidecar OnnxPolicy reads (librobot.serve.sidecar, format version 1)
    export.json     report: inputs, parity vs torch, int8's measured cost, timings, versions
    (torchscript:   policy.pt + torchscript.json + export.json)

Importing this package imports no torch; ``export_policy`` needs librobot-serve[export].
"""

from __future__ import annotations

from typing import Any

from librobot.serve.export.errors import ExportError

__all__ = ["ExportError", "add_tasks", "export_onnx", "export_policy", "export_torchscript", "resolve_policy_folder"]


def export_policy(*args: Any, **kwargs: Any) -> Any:
    from librobot.core.extras import require

    require("torch", extra="librobot-serve[export]", purpose="exporting policies")
    require("librobot.models", extra="librobot-serve[export]", purpose="exporting policies")
    from librobot.serve.export.api import export_policy as run

    return run(*args, **kwargs)


def export_onnx(source: Any, out: Any, **options: Any) -> Any:
    """``export_policy(..., format="onnx")``."""
    return export_policy(source, out, format="onnx", **options)


def export_torchscript(source: Any, out: Any, **options: Any) -> Any:
    """``export_policy(..., format="torchscript")``."""
    return export_policy(source, out, format="torchscript", **options)


def resolve_policy_folder(path: Any) -> Any:
    from librobot.serve.export.api import resolve_policy_folder as run

    return run(path)


def add_tasks(*args: Any, **kwargs: Any) -> Any:
    from librobot.serve.export.tasks import add_tasks as run

    return run(*args, **kwargs)
