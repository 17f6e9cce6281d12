"""Dynamic int8 quantisation of an exported policy (onnxruntime's quantiser) and a measurement of
what it costs in action error.

Weights of MatMul/Gemm become int8, activations are quantised on the fly per batch: no calibration
data, a smaller file, and faster matrix products on CPUs with int8 dot instructions.

One fix-up runs first: onnxruntime rewrites each ``Gemm(transB=1)`` into a MatMul by transposing
its weight initializer *in place*, assuming no other node uses it. An exported denoising loop
reuses the same weights at every step, so the second rewrite transposes them back and the model
breaks. ``_gemm_to_matmul`` does that rewrite itself, with one transposed copy per weight.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.extras import require
from librobot.serve.sidecar import load_sidecar, save_sidecar, sha256_file, sidecar_path

EXTRA = "librobot-serve[quantize]"


def _gemm_to_matmul(model: Any) -> int:
    """Rewrite plain ``Gemm`` nodes (alpha = beta = 1, transA = 0, constant B) as MatMul (+ Add)."""
    onnx = require("onnx", extra=EXTRA, purpose="rewriting the graph before quantisation")
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    transposed: dict[str, str] = {}
    nodes, rewritten = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in inits:
            nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            if weight not in transposed:
                t = numpy_helper.from_array(
                    np.ascontiguousarray(numpy_helper.to_array(inits[weight]).T), f"{weight}__T"
                )
                graph.initializer.append(t)
                transposed[weight] = t.name
            weight = transposed[weight]
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = f"{node.output[0]}__mm" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight], [mm_out], name=f"{node.name}__mm"))
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, node.input[2]], list(node.output), name=f"{node.name}__bias"))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    for name in [n for n in transposed if n not in used]:  # originals no longer referenced
        graph.initializer.remove(inits[name])
    onnx.checker.check_model(model)
    return rewritten


def quantize_int8(src: str | Path, dst: str | Path, *, per_channel: bool = False) -> Path:
    """Quantise the exported policy at ``src`` into the directory ``dst`` (``policy.onnx`` + sidecar).

    Returns the new sidecar path; ``OnnxPolicy(dst)`` loads the int8 policy.
    """
    onnx = require("onnx", extra=EXTRA, purpose="int8 quantisation")
    quant = require("onnxruntime.quantization", extra=EXTRA, purpose="int8 quantisation")
    spec, model_path = load_sidecar(src)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(model_path))
    _gemm_to_matmul(model)
    model = onnx.shape_inference.infer_shapes(model)  # the quantiser needs every MatMul's output type
    staged = dst / ".policy.fp32.onnx"
    onnx.save(model, str(staged))
    out = dst / "policy.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a pre-processing hint on the root logger every call
    try:
        quant.quantize_dynamic(
            str(staged),
            str(out),
            weight_type=quant.QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=["MatMul", "Gather"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
        staged.unlink(missing_ok=True)
    new = replace(spec, model="policy.onnx", model_sha256=sha256_file(out), quantization="int8-dynamic")
    side = sidecar_path(dst)
    save_sidecar(side, new)
    return side


def compare_policies(
    reference: Any,
    candidate: Any,
    observations: Mapping[str, np.ndarray],
    tasks: Sequence[str | None],
    *,
    seed: int = 0,
) -> dict[str, float]:
    """Action error of ``candidate`` vs ``reference`` on the same batch and the same noise.

    Returns max/mean absolute error and the max error relative to the reference actions' range.
    """
    kwargs: dict[str, Any] = {}
    noise_spec = getattr(getattr(reference, "spec", None), "noise", None)
    if noise_spec:
        rng = np.random.default_rng(seed)
        kwargs["noise"] = rng.standard_normal((len(tasks), *noise_spec["shape"]), dtype=np.float32)
    ref = np.asarray(reference.predict_chunks(observations, tasks, **kwargs), np.float64)
    got = np.asarray(candidate.predict_chunks(observations, tasks, **kwargs), np.float64)
    err = np.abs(ref - got)
    span = float(ref.max() - ref.min()) or 1.0
    return {"max_abs": float(err.max()), "mean_abs": float(err.mean()), "max_rel_to_range": float(err.max() / span)}
