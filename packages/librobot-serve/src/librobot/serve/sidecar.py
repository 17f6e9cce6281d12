"""The JSON sidecar that travels with an exported ``.onnx`` policy (format ``librobot-onnx-policy``,
version 1). The exporter writes it; ``OnnxPolicy`` reads it, so the edge needs neither torch nor
the model code. Example (``policy.json`` beside ``policy.onnx``)::

    {
      "format": "librobot-onnx-policy", "version": 1,
      "model": "policy.onnx", "model_sha256": "…",
      "chunk_size": 16, "action_dim": 6,
      "action_names": ["throttle", "steering", "boom", "bucket", "brake", "gear"],
      "inputs": [                          # policy-side name → graph input; shapes without batch axis
        {"name": "observation.state", "onnx_name": "state", "shape": [1, 22], "dtype": "float32"},
        {"name": "observation.images.front", "onnx_name": "image_front", "shape": [1, 3, 96, 96],
         "dtype": "float32", "kind": "image"}
      ],
      "output": "action",                  # graph output [B, H, A] in robot units
      "batch": "dynamic",                  # "dynamic": leading batch axis of any size; 1: fixed
      "normalization_in_graph": true,      # false: OnnxPolicy normalises inputs / un-normalises actions
      "normalization": {"observation.state": {"mode": "mean_std", "mean": […], "std": […]},
                        "action": {"mode": "min_max", "min": […], "max": […]}},
      "noise": {"onnx_name": "noise", "shape": [16, 6], "distribution": "standard_normal"},
      "task": {"onnx_name": "task_ids", "mask_onnx_name": "task_mask", "length": 12, "pad_id": 0,
               "table": {"pick up the cube": [5, 17, 3]}},
      "rtc": {"prefix_actions": "prefix_actions", "prefix_weights": "prefix_weights"},
      "quantization": null,
      "producer": {"framework": "pi0", "exporter": "librobot-serve 0.1.0"}
    }

- ``noise`` (optional): the sampling loop's initial noise is a graph input, so a run is
  reproducible given the noise; ``OnnxPolicy`` draws it from a seeded generator or takes it as an argument.
- ``task`` (optional): task strings are tokenised at export time into ``table``; the edge needs no
  tokenizer and a task outside the table is refused (servers answer 422). Ids are padded with
  ``pad_id`` to ``length``; the mask input (optional) is 1 on real tokens.
- ``rtc`` (optional): graph inputs for real-time chunking, [B, H, A] actions and [B, H] weights
  (zero weights = no guidance), making the policy an RTC policy.
- Normalisation modes: ``mean_std`` (mean/std), ``min_max`` (min/max → [-1, 1]), ``quantile``
  (q01/q99 → [-1, 1]), the same as the training processor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.checkpoint import write_json
from librobot.core.errors import CheckpointError, ConfigError, SpecError
from librobot.core.specs import FeatureSpec

FORMAT = "librobot-onnx-policy"
VERSION = 1
INPUT_DTYPES = ("float32", "float16", "float64", "int64", "int32", "uint8", "bool")
_NORM_KEYS = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "quantile": ("q01", "q99")}


def _check_keys(what: str, data: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"sidecar {what}: expected an object, got {type(data).__name__}")
    missing, unknown = required - set(data), set(data) - required - optional
    if missing:
        raise ConfigError(f"sidecar {what}: missing keys {sorted(missing)}")
    if unknown:
        raise ConfigError(f"sidecar {what}: unknown keys {sorted(unknown)}; known: {sorted(required | optional)}")


@dataclass(frozen=True)
class InputBinding:
    name: str  # the observation key (batch contract)
    onnx_name: str
    shape: tuple[int, ...]  # without the batch axis
    dtype: str = "float32"
    kind: str = "array"  # "array" or "image" (uint8 frames are accepted and scaled to [0, 1])

    def feature(self) -> FeatureSpec:
        return FeatureSpec(self.name, self.shape, dtype=self.dtype, kind="image" if self.kind == "image" else "array")


@dataclass(frozen=True)
class Normalizer:
    mode: str
    stats: Mapping[str, tuple[float, ...]]
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.mode not in _NORM_KEYS:
            raise ConfigError(f"normalisation mode must be one of {sorted(_NORM_KEYS)}, got {self.mode!r}")
        a, b = _NORM_KEYS[self.mode]
        if set(self.stats) != {a, b} or len(self.stats[a]) != len(self.stats[b]):
            raise ConfigError(
                f"normalisation '{self.mode}' needs equally long '{a}' and '{b}', got keys {sorted(self.stats)}"
            )

    def _ab(self) -> tuple[np.ndarray, np.ndarray]:
        """x_norm = (x − a) / b."""
        k1, k2 = _NORM_KEYS[self.mode]
        lo, hi = np.asarray(self.stats[k1], np.float64), np.asarray(self.stats[k2], np.float64)
        if self.mode == "mean_std":
            return lo, np.maximum(hi, self.eps)
        return (lo + hi) / 2.0, np.maximum((hi - lo) / 2.0, self.eps)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        a, b = self._ab()
        return ((x - a) / b).astype(x.dtype)

    def denormalize(self, y: np.ndarray) -> np.ndarray:
        a, b = self._ab()
        return (y * b + a).astype(y.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, **{k: list(v) for k, v in self.stats.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalizer:
        mode = data.get("mode")
        if mode not in _NORM_KEYS:
            raise ConfigError(f"sidecar normalisation: mode must be one of {sorted(_NORM_KEYS)}, got {mode!r}")
        _check_keys(f"normalisation ({mode})", data, {"mode", *_NORM_KEYS[mode]}, {"eps"})
        stats = {k: tuple(float(v) for v in data[k]) for k in _NORM_KEYS[mode]}
        return cls(mode, stats, float(data.get("eps", 1e-8)))


@dataclass(frozen=True)
class OnnxPolicySpec:
    model: str
    chunk_size: int
    action_dim: int
    inputs: tuple[InputBinding, ...]
    output: str = "action"
    batch: str | int = "dynamic"
    model_sha256: str | None = None
    action_names: tuple[str, ...] | None = None
    normalization_in_graph: bool = True
    normalization: Mapping[str, Normalizer] = field(default_factory=dict)
    noise: Mapping[str, Any] | None = None  # onnx_name, shape, distribution
    task: Mapping[str, Any] | None = None  # onnx_name, mask_onnx_name, length, pad_id, table
    rtc: Mapping[str, str] | None = None  # prefix_actions, prefix_weights
    quantization: str | None = None
    producer: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.chunk_size < 1 or self.action_dim < 1:
            raise ConfigError(
                f"sidecar: chunk_size and action_dim must be >= 1, got {self.chunk_size}, {self.action_dim}"
            )
        if self.batch != "dynamic" and self.batch != 1:
            raise ConfigError(f"sidecar: batch must be 'dynamic' or 1, got {self.batch!r}")
        if self.action_names is not None and len(self.action_names) != self.action_dim:
            raise ConfigError(f"sidecar: {len(self.action_names)} action_names for action_dim {self.action_dim}")
        names = [b.name for b in self.inputs]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"sidecar: inputs must be a non-empty list with unique names, got {names}")
        for b in self.inputs:
            if b.dtype not in INPUT_DTYPES:
                raise ConfigError(f"sidecar input '{b.name}': dtype must be one of {INPUT_DTYPES}, got {b.dtype!r}")
        for key in self.normalization:
            if key != "action" and key not in names:
                raise ConfigError(f"sidecar: normalisation for '{key}', which is not an input or 'action'")
        if self.noise is not None:
            _check_keys("noise", self.noise, {"onnx_name", "shape"}, {"distribution"})
            if self.noise.get("distribution", "standard_normal") != "standard_normal":
                raise ConfigError("sidecar noise: only distribution 'standard_normal' is defined in version 1")
        if self.task is not None:
            _check_keys("task", self.task, {"onnx_name", "length", "table"}, {"mask_onnx_name", "pad_id"})
            for text, ids in self.task["table"].items():
                if not 0 < len(ids) <= int(self.task["length"]):
                    raise ConfigError(f"sidecar task table: '{text}' has {len(ids)} ids; need 1..{self.task['length']}")
        if self.rtc is not None:
            _check_keys("rtc", self.rtc, {"prefix_actions", "prefix_weights"}, set())

    @property
    def known_tasks(self) -> tuple[str, ...] | None:
        return tuple(self.task["table"]) if self.task else None

    def features(self) -> dict[str, FeatureSpec]:
        return {b.name: b.feature() for b in self.inputs}

    def to_dict(self) -> dict[str, Any]:
        out = {"format": FORMAT, "version": VERSION, **asdict(self)}
        out["inputs"] = [asdict(b) | {"shape": list(b.shape)} for b in self.inputs]
        out["normalization"] = {k: n.to_dict() for k, n in self.normalization.items()}
        out["action_names"] = list(self.action_names) if self.action_names else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OnnxPolicySpec:
        if data.get("format") != FORMAT:
            raise ConfigError(f"not a LibroBot ONNX sidecar: format is {data.get('format')!r}, expected {FORMAT!r}")
        if data.get("version") != VERSION:
            raise ConfigError(
                f"sidecar version {data.get('version')!r} is not supported by this librobot-serve (reads version {VERSION}); "
                "upgrade librobot-serve or re-export the policy"
            )
        fields = set(cls.__dataclass_fields__)
        _check_keys("", data, {"format", "version", "model", "chunk_size", "action_dim", "inputs"}, fields)
        kw = {k: v for k, v in data.items() if k in fields}
        kw["inputs"] = tuple(cls._binding(b) for b in data["inputs"])
        kw["normalization"] = {k: Normalizer.from_dict(v) for k, v in (data.get("normalization") or {}).items()}
        if kw.get("action_names") is not None:
            kw["action_names"] = tuple(kw["action_names"])
        return cls(**kw)

    @staticmethod
    def _binding(data: Mapping[str, Any]) -> InputBinding:
        _check_keys("input", data, {"name", "onnx_name", "shape"}, {"dtype", "kind"})
        try:
            return InputBinding(**{**data, "shape": tuple(int(s) for s in data["shape"])})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"sidecar input {data.get('name')!r}: {exc}") from exc


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: str | Path) -> Path:
    """The sidecar for a directory (``policy.json``), a sidecar file, or an ``.onnx`` model (same stem)."""
    path = Path(path)
    if path.is_dir():
        return path / "policy.json"
    return path.with_suffix(".json") if path.suffix == ".onnx" else path


def save_sidecar(path: str | Path, spec: OnnxPolicySpec) -> Path:
    return write_json(path, spec.to_dict())


def load_sidecar(path: str | Path, *, verify: bool = True) -> tuple[OnnxPolicySpec, Path]:
    """Read and validate a sidecar; returns it and the model path (checksum verified if recorded)."""
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(
            f"no ONNX policy sidecar at {side}: an exported policy is a '.onnx' file with a JSON sidecar "
            f"(format '{FORMAT}') beside it; export with `librobot export CHECKPOINT --format onnx`"
        )
    try:
        data = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{side}: not valid JSON ({exc})") from exc
    spec = OnnxPolicySpec.from_dict(data)
    model = side.parent / spec.model
    if not model.is_file():
        raise CheckpointError(f"{side} names model '{spec.model}', but {model} does not exist")
    if verify and spec.model_sha256 and sha256_file(model) != spec.model_sha256:
        raise CheckpointError(
            f"{model}: sha256 differs from the one in {side}; the model and sidecar do not belong together"
        )
    return spec, model


def check_task_ids(spec: OnnxPolicySpec, task: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [length] and mask [length] of a known task (raises SpecError naming the field)."""
    assert spec.task is not None
    table = spec.task["table"]
    if task is None or task not in table:
        raise SpecError(f"task: {task!r} is not one of the policy's tasks {sorted(table)}")
    length, pad = int(spec.task["length"]), int(spec.task.get("pad_id", 0))
    ids = np.full(length, pad, np.int64)
    ids[: len(table[task])] = table[task]
    mask = np.zeros(length, np.int64)
    mask[: len(table[task])] = 1
    return ids, mask
