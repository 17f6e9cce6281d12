"""``export_policy``: a policy folder (or a training run, or a model in memory) → an export folder.

The folder is built in a hidden temporary directory beside ``out`` and renamed into place only
after the graph has been verified against the torch policy, so a failed export leaves nothing (and
an existing export stays as it was).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from librobot.core.checkpoint import atomic_directory, write_json
from librobot.core.errors import ConfigError
from librobot.core.logging import get_logger
from librobot.serve.export import onnx_export, torchscript
from librobot.serve.export.errors import ExportError
from librobot.serve.export.graph import random_inputs
from librobot.serve.export.layout import GraphLayout
from librobot.serve.export.probe import probe
from librobot.serve.export.verify import measure
from librobot.serve.sidecar import save_sidecar, sha256_file

log = get_logger("serve.export")
FORMATS = ("onnx", "torchscript")
REPORT = "export.json"


@dataclass
class ExportResult:
    path: Path
    layout: GraphLayout
    report: dict[str, Any]


def resolve_policy_folder(path: str | Path) -> Path:
    """A policy folder (``save_pretrained``), or a training run folder holding one in ``policy/``."""
    path = Path(path)
    if (path / "policy" / "config.json").is_file():
        path = path / "policy"
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{path} is not a policy folder (no config.json) nor a training run (no policy/config.json); "
            "pass the folder written by save_pretrained or the run folder"
        )
    return path


def _load(source: Any, trust_remote_code: bool) -> tuple[Any, str | None]:
    if isinstance(source, torch.nn.Module):
        return source, None
    from librobot.models.frameworks.base import AbstractVLA

    folder = resolve_policy_folder(source)
    model = AbstractVLA.from_pretrained(folder, device="cpu", trust_remote_code=trust_remote_code)
    from librobot.models.adapters.lora import LoRAAdapter

    if isinstance(model.vlm, LoRAAdapter):  # adapters folded into the base weights: one plain graph
        model.vlm = model.vlm.merge_and_unload()
    return model, str(folder)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxscript

    from librobot.serve import __version__

    return {
        "librobot-serve": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def export_policy(
    source: Any,
    out: str | Path,
    *,
    format: str = "onnx",
    fp16: bool = False,
    int8: bool = False,
    tasks: Sequence[str] = (),
    cameras: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
    history: int | None = None,
    max_task_tokens: int | None = None,
    rtc: bool = True,
    trials: int = 3,
    tolerance: float = 1e-4,
    seed: int = 0,
    trust_remote_code: bool = False,
) -> ExportResult:
    """Export ``source`` (a policy/run folder or an ``AbstractVLA``) to ``out``; see the package docstring."""
    if format not in FORMATS:
        raise ConfigError(f"export format must be one of {FORMATS}, got {format!r}")
    if fp16 and int8:
        raise ConfigError("--fp16 and --int8 are alternatives: fp16 for GPU targets (the Orin), int8 for CPUs")
    if format == "torchscript" and (fp16 or int8):
        raise ConfigError("--fp16/--int8 apply to ONNX exports; TorchScript is exported in float32")
    model, folder = _load(source, trust_remote_code)
    framework = getattr(model, "registry_name", "") or type(model).__name__
    was_training = model.training
    model.eval().to("cpu")
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"
    if history is None:  # the observation window the policy was trained on
        history = int(getattr(model.config, "n_obs_steps", 1) or 1)
    layout_options = dict(tasks=list(tasks), cameras=cameras, image_size=image_size, history=history,
                          max_task_tokens=max_task_tokens, rtc=rtc)  # fmt: skip
    check = Check(trials, tolerance, seed)
    try:
        return _export(model, framework, folder, Path(out), format, precision, layout_options, check)
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class Check:
    """How an export is verified: random draws, the accepted error (normalised units), the seed."""

    trials: int
    tolerance: float
    seed: int


def _export(model, framework, folder, out, format, precision, layout_options, check: Check) -> ExportResult:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    layout = probe(model, framework, **layout_options)
    timings["probe"] = time.perf_counter() - t
    producer = {
        "framework": framework,
        "exporter": f"librobot-serve {_versions()['librobot-serve']}",
        "source": folder,
        "precision": precision,
        "prompt_views": layout.task.num_views if layout.task else 0,
        "normalizer": model.normalizer.state(),
    }
    report: dict[str, Any] = {
        "format": "librobot-export-report",
        "version": 1,
        "framework": framework,
        "export_format": format,
        "precision": precision,
        "source": folder,
        "inputs": {k: list(v) for k, v in layout.input_shapes().items()},
        "noise_input": layout.noise,
        "rtc_inputs": layout.rtc,
        "parity_metric": "max |exported - torch predict_action| over fresh random inputs and noise; "
        "'max_abs_normalized' divides by the action normaliser's scale (tolerance applies to it)",
        "tolerance": check.tolerance,
        "versions": _versions(),
    }
    with atomic_directory(out) as tmp:
        if format == "torchscript":
            _torchscript(model, layout, tmp, producer, report, timings, check)
        else:
            _onnx(model, layout, tmp, producer, report, timings, check, precision)
        report["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        write_json(tmp / REPORT, report)
    log.info("exported %s (%s, %s) to %s", framework, format, precision, out)
    return ExportResult(out, layout, report)


def _check(framework: str, what: str, parity: dict[str, Any], tolerance: float, hint: str = "") -> None:
    if not parity["max_abs_normalized"] <= tolerance:
        raise ExportError(
            f"{framework}: the {what} disagrees with the torch policy: max error {parity['max_abs_normalized']:.3g} "
            f"(normalised units) > tolerance {tolerance:g}.{hint} Please report it with the policy's config."
        )


def _onnx(model, layout, tmp, producer, report, timings, check: Check, precision: str) -> None:
    from librobot.serve.onnx_policy import OnnxPolicy
    from librobot.serve.quantize import compare_policies, quantize_int8

    def parity(path: Path) -> dict[str, Any]:
        run = onnx_export.runner(onnx_export.session(path))
        return measure(model, layout, run, trials=check.trials, seed=check.seed)

    def sidecar(directory: Path) -> None:
        spec = layout.sidecar(
            model_file="policy.onnx", sha256=sha256_file(directory / "policy.onnx"), producer=producer
        )
        save_sidecar(directory / "policy.json", spec)

    t = time.perf_counter()
    program = onnx_export.trace(model, layout)
    timings["torch_export"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="librobot-export-") as scratch:
        fp32_dir = Path(scratch)  # the float32 graph is always built and verified first
        t = time.perf_counter()
        onnx_export.to_onnx(program, layout, fp32_dir / "policy.onnx")
        timings["onnx_conversion"] = time.perf_counter() - t
        sidecar(fp32_dir)
        t = time.perf_counter()
        report["parity_fp32_vs_torch"] = parity(fp32_dir / "policy.onnx")
        timings["verify"] = time.perf_counter() - t
        _check(layout.framework, "exported ONNX graph", report["parity_fp32_vs_torch"], check.tolerance)
        if precision == "int8":
            quantize_int8(fp32_dir, tmp)  # writes policy.onnx + its sidecar
            obs, tasks = policy_batch(layout, np.random.default_rng(check.seed + 1), 16)
            report["int8_vs_fp32"] = compare_policies(
                OnnxPolicy(fp32_dir), OnnxPolicy(tmp), obs, tasks, seed=check.seed
            )
        elif precision == "fp16":
            _to_fp16(fp32_dir / "policy.onnx", tmp / "policy.onnx")
            sidecar(tmp)
            report["note"] = "fp16 targets GPUs (the Orin); onnxruntime's CPU provider runs many fp16 ops slowly"
        else:
            for file in fp32_dir.iterdir():
                file.replace(tmp / file.name)
        report["parity_vs_torch"] = (
            report["parity_fp32_vs_torch"] if precision == "fp32" else parity(tmp / "policy.onnx")
        )
    OnnxPolicy(tmp)  # the sidecar and the graph agree (inputs, output, checksum)
    report["files"] = [*sorted(p.name for p in tmp.iterdir()), REPORT]


def _to_fp16(src: Path, dst: Path) -> None:
    import contextlib
    import io
    import warnings

    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save_model(half, str(dst))


def policy_batch(layout: GraphLayout, rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], list]:
    """Observations stacked on a batch axis, keyed like a robot sends them, and tasks from the table."""
    draws = [random_inputs(layout, rng) for _ in range(n)]
    obs = {b.name: np.concatenate([d[b.onnx_name] for d in draws]) for b in layout.bindings()}
    table = list(layout.task.table) if layout.task is not None else [None]
    return obs, [table[i % len(table)] for i in range(n)]


def _torchscript(model, layout, tmp, producer, report, timings, check: Check) -> None:
    t = time.perf_counter()
    module = torchscript.trace(model, layout)
    timings["jit_trace"] = time.perf_counter() - t
    t = time.perf_counter()
    parity = measure(model, layout, torchscript.runner(module, layout), trials=check.trials, seed=check.seed)
    timings["verify"] = time.perf_counter() - t
    report["parity_vs_torch"] = parity
    warned = getattr(module, "tracer_warnings", [])
    hint = f" The tracer warned: {warned[0]}." if warned else ""
    _check(layout.framework, "TorchScript trace", parity, check.tolerance, hint)
    path = torchscript.save(module, tmp / "policy.pt")
    spec = layout.sidecar(model_file="policy.pt", sha256=sha256_file(path), producer=producer).to_dict()
    write_json(tmp / "torchscript.json", {**spec, "format": "librobot-torchscript-policy"})
    report["files"] = [*sorted(p.name for p in tmp.iterdir()), REPORT]
