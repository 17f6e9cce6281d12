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
      "execution": {"mode": "ensemble", "ensemble_coeff": 0.01},
      "quantization": null,
      "producer": {"framework": "pi0", "exporter": "librobot-serve 0.1.0"}
    }

- ``model`` is a '/'-separated path inside the sidecar's folder, and ``model_sha256`` is required:
  ``load_sidecar`` refuses a sidecar without it (``verify=False`` skips the checksum deliberately;
  ``record_checksum`` records one for a graph built by hand). ``OnnxPolicy`` then checks every declared
  input (name, rank, fixed dims, dtype) and the output against the graph. Every problem is a named
  error from ``librobot.serve.errors`` (``SidecarError``, ``MissingChecksumError``, ``CorruptModelError``,
  ``GraphMismatchError``, all ``PolicyArtifactError``).
- ``noise`` (optional): the sampling loop's initial noise is a graph input, so a run is
  reproducible given the noise; ``OnnxPolicy`` draws it from a seeded generator or takes it as an argument.
- ``task`` (optional): task strings are tokenised at export time into ``table``; the edge needs no
  tokenizer and a task outside the table is refused (servers answer 422). Ids are padded with
  ``pad_id`` to ``length``; the mask input (optional) is 1 on real tokens.
- ``rtc`` (optional): graph inputs for real-time chunking, [B, H, A] actions and [B, H] weights
  (zero weights = no guidance), making the policy an RTC policy.
- ``execution`` (optional): how the policy's chunks are meant to run, followed by a runtime with
  ``mode="auto"``: ``{"mode": "ensemble", "ensemble_coeff": m}`` for ACT's temporal ensembling, or
  ``{"mode": "sync"}``; absent means no preference.
- ``state_parts`` (optional, written only when the policy has them): ``[[key, width], ...]``, the
  observation vectors the ``observation.state`` input joins, in order (e.g.
  ``[["observation.state", 2], ["observation.environment_state", 3]]``). ``OnnxPolicy`` accepts them
  as separate keys and concatenates them before feeding the graph; the widths sum to the state
  input's last axis. A reader that predates the field refuses such a sidecar instead of misreading it.
- Normalisation modes: ``mean_std`` (mean/std), ``min_max`` (min/max → [-1, 1]), ``quantile``
  (q01/q99 → [-1, 1]), the same as the training processor.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from librobot.core.batch import OBS_STATE
from librobot.core.checkpoint import read_json, sha256_file, write_json
from librobot.core.errors import CheckpointError, ConfigError, SpecError
from librobot.core.observations import describe_parts, parse_state_parts
from librobot.core.specs import FeatureSpec
from librobot.serve.errors import CorruptModelError, MissingChecksumError, PolicyArtifactError, SidecarError

FORMAT = "librobot-onnx-policy"
EXECUTION_MODES = ("sync", "ensemble")  # what an exported policy may recommend to its runtime
VERSION = 1
INPUT_DTYPES = ("float32", "float16", "float64", "int64", "int32", "uint8", "bool")
INPUT_KINDS = ("array", "image")
_NORM_KEYS = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "quantile": ("q01", "q99")}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REEXPORT = "re-export the policy with `librobot export CHECKPOINT --format onnx`"


# JSON gives any type anywhere: each reader names the field and what it should be, so a damaged or
# hand-edited sidecar is a SidecarError at load rather than a TypeError (or a silent misreading) later.
def _check_keys(what: str, data: Any, required: set[str], optional: set[str]) -> None:
    if not isinstance(data, Mapping):
        raise SidecarError(f"sidecar {what}: expected an object, got {type(data).__name__}")
    missing, unknown = required - set(data), set(data) - required - optional
    if missing:
        raise SidecarError(f"sidecar {what}: missing keys {sorted(missing)}")
    if unknown:
        raise SidecarError(f"sidecar {what}: unknown keys {sorted(unknown)}; known: {sorted(required | optional)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _str(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise SidecarError(f"sidecar {what}: expected a non-empty string, got {_show(value)}")
    return value


def _int(what: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SidecarError(f"sidecar {what}: expected an integer >= {low}, got {_show(value)}")
    return value


def _list(what: str, value: Any, item, min_len: int = 0) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) < min_len:
        least = f" of at least {min_len} items" if min_len else ""
        raise SidecarError(f"sidecar {what}: expected a list{least}, got {_show(value)}")
    return tuple(item(f"{what}[{i}]", v) for i, v in enumerate(value))


def _float(what: str, value: Any) -> float:
    try:
        number = math.nan if isinstance(value, bool) or not isinstance(value, (int, float)) else float(value)
    except OverflowError:  # a JSON integer beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise SidecarError(f"sidecar {what}: expected a finite number, got {_show(value)}")
    return number


def _dim(what: str, value: Any) -> int:
    return _int(what, value, 1)


def _model_name(name: Any) -> str:
    """The sidecar's ``model``: a relative '/'-separated path that stays inside the export folder
    (an artifact is data: it must not point the loader at other files on the machine)."""
    name = _str("model", name)
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or "\\" in name or "\x00" in name or ".." in parts:
        raise SidecarError(
            f"sidecar model: {_show(name)} is not a path inside the export folder; the sidecar must name the "
            f"graph beside it (e.g. 'policy.onnx'): fix 'model' or {_REEXPORT}"
        )
    return name


@dataclass(frozen=True)
class InputBinding:
    name: str  # the observation key (batch contract)
    onnx_name: str
    shape: tuple[int, ...]  # without the batch axis
    dtype: str = "float32"
    kind: str = "array"  # "array" or "image" (uint8 frames are accepted and scaled to [0, 1])

    def __post_init__(self) -> None:
        what = f"input {_show(self.name)}"
        _str(f"{what} name", self.name)
        _str(f"{what} onnx_name", self.onnx_name)
        object.__setattr__(self, "shape", _list(f"{what} shape", self.shape, _dim, 1))
        if self.dtype not in INPUT_DTYPES:
            raise SidecarError(f"sidecar {what}: dtype must be one of {INPUT_DTYPES}, got {_show(self.dtype)}")
        if self.kind not in INPUT_KINDS:
            raise SidecarError(f"sidecar {what}: kind must be one of {INPUT_KINDS}, got {_show(self.kind)}")

    def feature(self) -> FeatureSpec:
        return FeatureSpec(self.name, self.shape, dtype=self.dtype, kind="image" if self.kind == "image" else "array")


@dataclass(frozen=True)
class Normalizer:
    mode: str
    stats: Mapping[str, tuple[float, ...]]
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.mode not in _NORM_KEYS:
            raise SidecarError(f"normalisation mode must be one of {sorted(_NORM_KEYS)}, got {_show(self.mode)}")
        a, b = _NORM_KEYS[self.mode]
        if set(self.stats) != {a, b} or len(self.stats[a]) != len(self.stats[b]):
            raise SidecarError(
                f"normalisation '{self.mode}' needs equally long '{a}' and '{b}', got keys {sorted(self.stats)}"
            )

    @property
    def size(self) -> int:
        return len(next(iter(self.stats.values())))

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
    def from_dict(cls, data: Any, what: str = "normalisation") -> Normalizer:
        mode = data.get("mode") if isinstance(data, Mapping) else None
        if mode not in _NORM_KEYS:
            modes = sorted(_NORM_KEYS)
            raise SidecarError(f"sidecar {what}: expected an object with mode one of {modes}, got {_show(data)}")
        _check_keys(f"{what} ({mode})", data, {"mode", *_NORM_KEYS[mode]}, {"eps"})
        stats = {k: _list(f"{what} {k}", data[k], _float, 1) for k in _NORM_KEYS[mode]}
        eps = _float(f"{what} eps", data.get("eps", 1e-8))
        if not eps > 0:
            raise SidecarError(f"sidecar {what}: eps must be > 0, got {eps}")
        return cls(mode, stats, eps)


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
    execution: Mapping[str, Any] | None = None  # mode, ensemble_coeff
    quantization: str | None = None
    producer: Mapping[str, Any] = field(default_factory=dict)
    state_parts: tuple[tuple[str, int], ...] | None = None  # key, width: what observation.state joins

    def __post_init__(self) -> None:
        _model_name(self.model)
        _int("chunk_size", self.chunk_size, 1)
        _int("action_dim", self.action_dim, 1)
        _str("output", self.output)
        if self.batch != "dynamic" and not (type(self.batch) is int and self.batch == 1):
            raise SidecarError(f"sidecar: batch must be 'dynamic' or 1, got {_show(self.batch)}")
        sha = self.model_sha256
        if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise SidecarError(f"sidecar model_sha256: expected 64 lowercase hex digits, got {_show(sha)}")
        if self.action_names is not None:
            _list("action_names", self.action_names, _str)
            if len(self.action_names) != self.action_dim:
                raise SidecarError(f"sidecar: {len(self.action_names)} action_names for action_dim {self.action_dim}")
        if not isinstance(self.normalization_in_graph, bool):
            got = _show(self.normalization_in_graph)
            raise SidecarError(f"sidecar normalization_in_graph: expected true or false, got {got}")
        if self.quantization is not None:
            _str("quantization", self.quantization)
        if not isinstance(self.producer, Mapping):
            raise SidecarError(f"sidecar producer: expected an object, got {_show(self.producer)}")
        names = [b.name for b in self.inputs]
        if not names or len(set(names)) != len(names):
            raise SidecarError(f"sidecar: inputs must be a non-empty list with unique names, got {names}")
        widths = {b.name: b.shape[-1] for b in self.inputs} | {"action": self.action_dim}
        for key, norm in self.normalization.items():
            if key not in widths:
                raise SidecarError(f"sidecar: normalisation for '{key}', which is not an input or 'action'")
            if norm.size not in (1, widths[key]):  # broadcast over the last axis
                raise SidecarError(
                    f"sidecar normalisation '{key}': {norm.size} values for a last axis of {widths[key]}"
                )
        self._check_state_parts()
        self._check_extras()
        onnx_names = [b.onnx_name for b in self.inputs] + self._extra_inputs()
        if len(set(onnx_names)) != len(onnx_names):
            raise SidecarError(f"sidecar: graph input names must be unique, got {onnx_names}")

    def _check_state_parts(self) -> None:
        if self.state_parts is None:
            return
        try:
            parts = parse_state_parts(self.state_parts, where="sidecar state_parts")
        except ConfigError as exc:
            raise SidecarError(str(exc)) from None
        object.__setattr__(self, "state_parts", tuple((p.key, p.width) for p in parts))
        state = [b for b in self.inputs if b.name == OBS_STATE]
        total = sum(p.width for p in parts)
        if not state or state[0].shape[-1] != total:
            got = f"a last axis of {state[0].shape[-1]}" if state else "no observation.state input"
            raise SidecarError(
                f"sidecar state_parts ({describe_parts(parts)}) add up to {total} values, but there is {got}"
            )

    def _check_extras(self) -> None:
        if self.noise is not None:
            _check_keys("noise", self.noise, {"onnx_name", "shape"}, {"distribution"})
            _str("noise onnx_name", self.noise["onnx_name"])
            _list("noise shape", self.noise["shape"], _dim, 1)
            if self.noise.get("distribution", "standard_normal") != "standard_normal":
                raise SidecarError("sidecar noise: only distribution 'standard_normal' is defined in version 1")
        if self.task is not None:
            _check_keys("task", self.task, {"onnx_name", "length", "table"}, {"mask_onnx_name", "pad_id"})
            _str("task onnx_name", self.task["onnx_name"])
            if self.task.get("mask_onnx_name") is not None:
                _str("task mask_onnx_name", self.task["mask_onnx_name"])
            length = _int("task length", self.task["length"], 1)
            _int("task pad_id", self.task.get("pad_id", 0))
            if not isinstance(self.task["table"], Mapping):
                got = _show(self.task["table"])
                raise SidecarError(f"sidecar task table: expected an object (task text → token ids), got {got}")
            for text, ids in self.task["table"].items():
                if not 0 < len(_list(f"task table {_show(text)}", ids, _int)) <= length:
                    raise SidecarError(f"sidecar task table: '{text}' has {len(ids)} ids; need 1..{length}")
        if self.rtc is not None:
            _check_keys("rtc", self.rtc, {"prefix_actions", "prefix_weights"}, set())
            for key, value in self.rtc.items():
                _str(f"rtc {key}", value)
        if self.execution is not None:
            _check_keys("execution", self.execution, {"mode"}, {"ensemble_coeff"})
            if self.execution["mode"] not in EXECUTION_MODES:
                got = _show(self.execution["mode"])
                raise SidecarError(f"sidecar execution mode: expected one of {list(EXECUTION_MODES)}, got {got}")
            coeff = self.execution.get("ensemble_coeff", 0.0)
            if isinstance(coeff, bool) or not isinstance(coeff, (int, float)) or not math.isfinite(coeff):
                raise SidecarError(f"sidecar execution ensemble_coeff: expected a finite number, got {_show(coeff)}")

    def _extra_inputs(self) -> list[str]:
        """Graph inputs besides the observations: noise, task ids (+ mask), RTC prefix."""
        out = [self.noise["onnx_name"]] if self.noise else []
        if self.task:
            out += [self.task["onnx_name"]] + ([self.task["mask_onnx_name"]] if self.task.get("mask_onnx_name") else [])
        return out + (list(self.rtc.values()) if self.rtc else [])

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
        if self.state_parts is None:
            del out["state_parts"]  # sidecars of single-vector policies stay readable by older readers
        else:
            out["state_parts"] = [list(p) for p in self.state_parts]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> OnnxPolicySpec:
        if not isinstance(data, Mapping):
            raise SidecarError(f"not a LibroBot ONNX sidecar: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            got = _show(data.get("format"))
            raise SidecarError(f"not a LibroBot ONNX sidecar: format is {got}, expected {FORMAT!r}")
        if type(data.get("version")) is not int or data["version"] != VERSION:  # JSON true == 1 in Python
            raise SidecarError(
                f"sidecar version {_show(data.get('version'))} is not supported by this librobot-serve "
                f"(reads version {VERSION}); "
                "upgrade librobot-serve or re-export the policy"
            )
        fields = set(cls.__dataclass_fields__)
        _check_keys("fields", data, {"format", "version", "model", "chunk_size", "action_dim", "inputs"}, fields)
        kw = {k: v for k, v in data.items() if k in fields}
        kw["inputs"] = _list("inputs", data["inputs"], lambda what, b: cls._binding(b), 1)
        norm = {} if data.get("normalization") is None else data["normalization"]
        if not isinstance(norm, Mapping):
            raise SidecarError(f"sidecar normalization: expected an object, got {_show(norm)}")
        kw["normalization"] = {k: Normalizer.from_dict(v, f"normalisation {_show(k)}") for k, v in norm.items()}
        if kw.get("action_names") is not None:
            kw["action_names"] = _list("action_names", kw["action_names"], _str)
        if kw.get("producer") is None:  # written as null by hand-made sidecars
            kw["producer"] = {}
        return cls(**kw)

    @staticmethod
    def _binding(data: Any) -> InputBinding:
        _check_keys("input", data, {"name", "onnx_name", "shape"}, {"dtype", "kind"})
        return InputBinding(**data)


def sidecar_path(path: str | Path) -> Path:
    """The sidecar for a directory (``policy.json``), a sidecar file, or an ``.onnx`` model (same stem)."""
    path = Path(path)
    if path.is_dir():
        return path / "policy.json"
    return path.with_suffix(".json") if path.suffix == ".onnx" else path


def save_sidecar(path: str | Path, spec: OnnxPolicySpec) -> Path:
    return write_json(path, spec.to_dict())


def _read(side: Path) -> OnnxPolicySpec:
    try:
        return OnnxPolicySpec.from_dict(read_json(side))
    except RecursionError:
        raise SidecarError(f"{side}: nested too deeply to be a sidecar; {_REEXPORT}") from None
    except (CheckpointError, SidecarError) as exc:  # read_json: not JSON / not UTF-8
        raise SidecarError(
            f"{side}: {exc}. The sidecar is damaged or was edited by hand: fix it or {_REEXPORT}"
        ) from None


def _inside(side: Path, name: str) -> Path:
    """``side.parent / name``, refused if a symlink on the way leads out of the export folder."""
    model = side.parent / name
    try:
        inside = model.resolve().is_relative_to(side.parent.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise SidecarError(
            f"{side} names model '{name}', which resolves outside the export folder {side.parent} (a symlink?); "
            f"put the graph itself in the folder or {_REEXPORT}"
        )
    return model


def load_sidecar(path: str | Path, *, verify: bool = True) -> tuple[OnnxPolicySpec, Path]:
    """Read and validate a sidecar; returns it and the model path, whose sha256 must match the
    recorded one (``verify=False`` skips the checksum, recorded or not, and only that)."""
    side = sidecar_path(path)
    if not side.is_file():
        raise PolicyArtifactError(
            f"no ONNX policy sidecar at {side}: an exported policy is a '.onnx' file with a JSON sidecar "
            f"(format '{FORMAT}') beside it; export with `librobot export CHECKPOINT --format onnx`"
        )
    spec = _read(side)
    model = _inside(side, spec.model)
    if not model.is_file():
        raise PolicyArtifactError(f"{side} names model '{spec.model}', but {model} does not exist: {_REEXPORT}")
    if not verify:
        return spec, model
    if spec.model_sha256 is None:
        raise MissingChecksumError(
            f"{side} records no model_sha256, so {model.name} cannot be checked: the export is incomplete "
            f"(`librobot export` always records it); {_REEXPORT}. If you built or edited the graph yourself, "
            f'record its checksum deliberately with `python -c "from librobot.serve.sidecar import record_checksum; '
            f"record_checksum('{side.parent}')\"`, or load with verify=False"
        )
    if sha256_file(model) != spec.model_sha256:
        raise CorruptModelError(
            f"{model}: sha256 differs from the one recorded in {side}: the file is corrupt or truncated (an "
            f"interrupted copy?) or belongs to another export; copy the export folder again or {_REEXPORT}"
        )
    return spec, model


def record_checksum(path: str | Path) -> Path:
    """Record the model's sha256 in its sidecar: for graphs built or edited by hand, on purpose."""
    spec, model = load_sidecar(path, verify=False)
    return save_sidecar(sidecar_path(path), replace(spec, model_sha256=sha256_file(model)))


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
