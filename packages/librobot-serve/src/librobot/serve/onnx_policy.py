"""An exported policy run by onnxruntime, behind the same ``PolicyInterface`` as the torch policy.

Needs numpy + onnxruntime only (no torch, no librobot-models): this is the edge path. The graph
and its JSON sidecar (``librobot.serve.sidecar``) come from ``librobot export``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.errors import CheckpointError, SpecError
from librobot.core.extras import require
from librobot.core.interfaces import PolicyInterface
from librobot.core.observations import StatePart, canonical_observation, parse_state_parts
from librobot.core.specs import FeatureSpec
from librobot.serve.errors import CorruptModelError, GraphMismatchError
from librobot.serve.rtc import pad_prefix
from librobot.serve.sidecar import OnnxPolicySpec, check_task_ids, load_sidecar, sidecar_path
from librobot.serve.validation import check_observation, check_task

# Sidecar dtype → onnxruntime's type string for a graph input.
_ORT_TYPES = {
    "float32": "tensor(float)",
    "float16": "tensor(float16)",
    "float64": "tensor(double)",
    "int64": "tensor(int64)",
    "int32": "tensor(int32)",
    "uint8": "tensor(uint8)",
    "bool": "tensor(bool)",
}


class OnnxPolicy(PolicyInterface):
    """``OnnxPolicy("export_dir")`` (or the ``.onnx`` file, or its sidecar)."""

    thread_safe = True  # onnxruntime sessions may be run concurrently

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        intra_op_threads: int | None = None,
        spin: bool = False,
        seed: int | None = 0,
        verify: bool = True,
    ) -> None:
        ort = require("onnxruntime", extra="librobot-serve[onnx]", purpose="running exported ONNX policies")
        self.spec, self.model_path = load_sidecar(path, verify=verify)
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = int(intra_op_threads)
        if not spin:
            # onnxruntime's worker threads busy-wait between runs by default. A control loop calls
            # every few tens of ms and a server shares the cores with its event loop: spinning only
            # burns those cores (a 32-way REST load test here ran 3x faster without it).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.model_path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:
            if not type(exc).__module__.startswith("onnxruntime"):
                raise  # ours or Python's (a bad argument): not a statement about the file
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CorruptModelError(
                f"{self.model_path}: onnxruntime cannot load this model: the file is corrupt or truncated (an "
                f"interrupted copy?), not an ONNX graph, or needs a newer onnxruntime; copy the export folder again "
                f"or re-export the policy with `librobot export CHECKPOINT --format onnx`. onnxruntime said: {reason}"
            ) from None
        self._check_graph(sidecar_path(path))
        self._features = self.spec.features()
        self._state_parts = parse_state_parts(self.spec.state_parts, where="sidecar state_parts")
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()

    def _check_graph(self, side: Path) -> None:
        """Refuse at load a graph its sidecar does not describe, rather than answering errors later."""
        diffs = graph_differences(self.spec, self.session.get_inputs(), self.session.get_outputs())
        if diffs:
            raise GraphMismatchError(
                f"{self.model_path} does not match its sidecar {side}:\n  - "
                + "\n  - ".join(diffs)
                + "\nThe two files come from different exports or one was edited: re-export the policy with "
                "`librobot export CHECKPOINT --format onnx`"
            )

    # ------------------------------------------------------------------ PolicyInterface
    @property
    def action_dim(self) -> int:
        return self.spec.action_dim

    @property
    def chunk_size(self) -> int:
        return self.spec.chunk_size

    @property
    def obs_horizon(self) -> int:
        """T_obs of the exported graph: its observation inputs are [T_obs, ...] (state [T, S], images [T, C, H, W])."""
        return int(next(iter(self._features.values())).shape[0]) if self._features else 1

    @property
    def execution(self) -> dict[str, Any]:
        """The execution recorded at export (ACT's temporal ensembling), for a runtime's mode="auto"."""
        return dict(self.spec.execution or {})

    @property
    def supports_rtc(self) -> bool:
        return self.spec.rtc is not None

    @property
    def input_features(self) -> dict[str, FeatureSpec]:
        return dict(self._features)

    @property
    def state_parts(self) -> tuple[StatePart, ...]:
        """The observation vectors the state input joins (sidecar ``state_parts``); sent as separate
        keys they are concatenated in this order before the graph runs."""
        return self._state_parts

    @property
    def known_tasks(self) -> tuple[str, ...] | None:
        return self.spec.known_tasks

    def predict_chunk(
        self,
        observation: Mapping[str, Any],
        task: str | None = None,
        *,
        prefix_actions: np.ndarray | None = None,
        prefix_weights: np.ndarray | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        obs = check_observation(self._features, canonical_observation(observation, self._state_parts))
        stacked = {k: v[None] for k, v in obs.items()}
        pa = pw = None
        if prefix_actions is not None:
            pa, pw = self._prefix(prefix_actions, prefix_weights)
            pa, pw = pa[None], pw[None]
        return self._run(stacked, [task], pa, pw, None if noise is None else np.asarray(noise)[None])[0]

    def predict_chunks(
        self,
        observations: Mapping[str, np.ndarray],
        tasks: Sequence[str | None],
        *,
        prefix_actions: np.ndarray | None = None,
        prefix_weights: np.ndarray | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """Chunks [B, H, A] for observations stacked on a leading batch axis; prefixes, if any, are
        padded to the chunk ([B, H, A] actions, [B, H] weights, zero weight = unconstrained)."""
        batch = len(tasks)
        stacked = check_observation(self._features, canonical_observation(observations, self._state_parts), batch)
        if self.spec.batch == 1 and batch > 1:  # fixed-batch graph: one run per item
            return np.concatenate(
                [
                    self._run(
                        {k: v[i : i + 1] for k, v in stacked.items()},
                        [tasks[i]],
                        None if prefix_actions is None else prefix_actions[i : i + 1],
                        None if prefix_weights is None else prefix_weights[i : i + 1],
                        None if noise is None else noise[i : i + 1],
                    )
                    for i in range(batch)
                ]
            )
        return self._run(stacked, list(tasks), prefix_actions, prefix_weights, noise)

    # ------------------------------------------------------------------ internals
    def _prefix(self, actions: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if not self.supports_rtc:
            raise SpecError("prefix_actions: this exported policy has no real-time chunking inputs (sidecar 'rtc')")
        pa, pw = pad_prefix(actions, weights, self.chunk_size)
        if pa.shape[1] != self.action_dim:
            raise SpecError(f"prefix_actions: expected {self.action_dim} action dims, got {pa.shape[1]}")
        return pa, pw

    def _run(
        self,
        obs: dict[str, np.ndarray],
        tasks: list[str | None],
        prefix_actions: np.ndarray | None,
        prefix_weights: np.ndarray | None,
        noise: np.ndarray | None,
    ) -> np.ndarray:
        spec, batch = self.spec, len(tasks)
        feeds: dict[str, np.ndarray] = {}
        for binding in spec.inputs:
            value = obs[binding.name]
            norm = spec.normalization.get(binding.name)
            if norm is not None and not spec.normalization_in_graph:
                value = norm.normalize(value)
            feeds[binding.onnx_name] = value
        if spec.task is not None:
            pairs = [check_task_ids(spec, check_task(t, spec.known_tasks)) for t in tasks]
            feeds[spec.task["onnx_name"]] = np.stack([p[0] for p in pairs])
            if spec.task.get("mask_onnx_name"):
                feeds[spec.task["mask_onnx_name"]] = np.stack([p[1] for p in pairs])
        if spec.noise is not None:
            shape = (batch, *spec.noise["shape"])
            if noise is None:
                with self._rng_lock:
                    noise = self._rng.standard_normal(shape, dtype=np.float32)
            elif noise.shape != shape:
                raise SpecError(f"noise: expected shape {list(shape)}, got {list(noise.shape)}")
            feeds[spec.noise["onnx_name"]] = noise.astype(np.float32)
        if spec.rtc is not None:
            h, a = self.chunk_size, self.action_dim
            pa = np.zeros((batch, h, a), np.float32) if prefix_actions is None else prefix_actions.astype(np.float32)
            pw = np.zeros((batch, h), np.float32) if prefix_weights is None else prefix_weights.astype(np.float32)
            if pa.shape != (batch, h, a) or pw.shape != (batch, h):
                raise SpecError(
                    f"prefix_actions/prefix_weights: expected [{batch}, {h}, {a}] / [{batch}, {h}] (padded)"
                )
            norm = spec.normalization.get("action")
            if norm is not None and not spec.normalization_in_graph:
                pa = norm.normalize(pa)  # the graph works in normalised action space
            feeds[spec.rtc["prefix_actions"]], feeds[spec.rtc["prefix_weights"]] = pa, pw
        (actions,) = self.session.run([spec.output], feeds)
        expected = (batch, self.chunk_size, self.action_dim)
        if actions.shape != expected:
            raise CheckpointError(
                f"{self.model_path}: output '{spec.output}' has shape {list(actions.shape)}, expected {list(expected)}"
            )
        norm = spec.normalization.get("action")
        if norm is not None and not spec.normalization_in_graph:
            actions = norm.denormalize(actions)
        return actions


def _declared_inputs(spec: OnnxPolicySpec) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """Graph input name → (what the sidecar calls it, shape without the batch axis, dtype) as fed."""
    out = {b.onnx_name: (f"input '{b.name}'", b.shape, b.dtype) for b in spec.inputs}
    h, a = spec.chunk_size, spec.action_dim
    if spec.noise is not None:
        out[spec.noise["onnx_name"]] = ("noise", tuple(spec.noise["shape"]), "float32")
    if spec.task is not None:
        length = (int(spec.task["length"]),)
        out[spec.task["onnx_name"]] = ("task ids", length, "int64")
        if spec.task.get("mask_onnx_name"):
            out[spec.task["mask_onnx_name"]] = ("task mask", length, "int64")
    if spec.rtc is not None:
        out[spec.rtc["prefix_actions"]] = ("rtc prefix_actions", (h, a), "float32")
        out[spec.rtc["prefix_weights"]] = ("rtc prefix_weights", (h,), "float32")
    return out


def _shape_differences(what: str, want: tuple[int, ...], got: Sequence[Any], batch: str | int) -> list[str]:
    """``want`` is without the batch axis; ``got`` is the graph's (ints fixed, str/None symbolic)."""
    sidecar = "[B, " + ", ".join(map(str, want)) + "]"
    if got is None:  # the graph leaves the shape open: nothing to compare
        return []
    if len(got) != len(want) + 1:
        return [f"{what}: rank {len(want) + 1} {sidecar} in the sidecar, rank {len(got)} {list(got)} in the graph"]
    diffs = []
    if isinstance(got[0], int) and (batch == "dynamic" or got[0] != 1):
        diffs.append(f"{what}: the graph fixes the batch axis to {got[0]}, the sidecar says batch {batch!r}")
    for axis, (w, g) in enumerate(zip(want, got[1:]), start=1):
        if isinstance(g, int) and g != w:
            diffs.append(f"{what}: axis {axis} is {w} in the sidecar {sidecar}, {g} in the graph {list(got)}")
    return diffs


def graph_differences(spec: OnnxPolicySpec, inputs: Sequence[Any], outputs: Sequence[Any]) -> list[str]:
    """Every way the graph's inputs/outputs (onnxruntime ``NodeArg``s) disagree with the sidecar:
    names, ranks, fixed dims and dtypes, one line each."""
    declared, graph = _declared_inputs(spec), {i.name: i for i in inputs}
    diffs = [f"{what} '{name}' is not a graph input" for name, (what, _, _) in declared.items() if name not in graph]
    undeclared = [i for n, i in graph.items() if n not in declared]
    diffs += [f"graph input '{i.name}' {i.type} {i.shape} is not declared in the sidecar" for i in undeclared]
    for name, (what, shape, dtype) in declared.items():
        if name in graph:
            diffs += _shape_differences(f"{what} ('{name}')", shape, graph[name].shape, spec.batch)
            if graph[name].type != _ORT_TYPES[dtype]:
                diffs.append(f"{what} ('{name}'): dtype {dtype} in the sidecar, {graph[name].type} in the graph")
    by_name = {o.name: o for o in outputs}
    if spec.output not in by_name:
        diffs.append(f"output '{spec.output}' is not a graph output (outputs: {sorted(by_name)})")
    else:
        want = (spec.chunk_size, spec.action_dim)
        diffs += _shape_differences(f"output '{spec.output}'", want, by_name[spec.output].shape, spec.batch)
    return diffs
