"""What an exported graph takes and returns, decided before anything is traced (torch-free).

The graph runs one observation (batch 1) to one action chunk. Its inputs, in this order:

    state           [1, T, S]        observation.state in robot units (when the policy reads a state);
                                     a state joined from several vectors stays one input, and the
                                     sidecar's ``state_parts`` lets OnnxPolicy take the parts apart
    image_<camera>  [1, T, 3, H, W]  observation.images.<camera>, float in [0, 1] (one per camera)
    task_ids        [1, L] int64     the instruction's prompt ids, right-padded with ``pad_id``
    task_mask       [1, L] int64     1 on real ids
    noise           [1, H, A]        the sampler's initial standard-normal draw (stochastic policies)
    prefix_actions  [1, H, A]        real-time chunking (flow policies with guidance): the planned
    prefix_weights  [1, H]           actions in robot units and their weights (0 = free)

and the output ``action`` [1, H, A] in robot units. ``GraphLayout.sidecar`` turns this into the
``policy.json`` that ``OnnxPolicy`` reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from librobot.core import batch as B
from librobot.serve.sidecar import InputBinding, OnnxPolicySpec

OUTPUT = "action"


def onnx_name_for_camera(camera: str) -> str:
    """Graph input name of a camera (ONNX names are kept to [A-Za-z0-9_])."""
    return "image_" + re.sub(r"[^A-Za-z0-9_]", "_", camera)


@dataclass(frozen=True)
class TaskInputs:
    """How instructions enter the graph: pre-tokenised prompt ids (see ``tasks.py``)."""

    length: int  # L: ids per prompt, the longest table entry (or --max-task-tokens)
    pad_id: int
    num_views: int  # the image count the framework's prompt was built for
    table: Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class GraphLayout:
    framework: str
    action_dim: int
    horizon: int
    state_dim: int
    history: int  # T: observation frames per input
    cameras: tuple[str, ...]
    image_size: tuple[int, int]
    noise: bool  # the initial sampling noise is an input
    task: TaskInputs | None  # None: the policy never reads the instruction
    rtc: bool = False
    execution: Mapping[str, Any] = field(default_factory=dict)  # the policy's recommended execution
    # the observation vectors the state input joins ([key, width] pairs; empty: observation.state as is)
    state_parts: tuple[tuple[str, int], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ inputs
    def input_names(self) -> list[str]:
        """Graph input names in positional order (the order ``PolicyGraph.forward`` takes them)."""
        names = ["state"] if self.state_dim else []
        names += [onnx_name_for_camera(c) for c in self.cameras]
        if self.task is not None:
            names += ["task_ids", "task_mask"]
        if self.noise:
            names.append("noise")
        if self.rtc:
            names += ["prefix_actions", "prefix_weights"]
        return names

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes with the batch axis (always 1), by graph input name."""
        h, w = self.image_size
        shapes: dict[str, tuple[int, ...]] = {}
        if self.state_dim:
            shapes["state"] = (1, self.history, self.state_dim)
        for cam in self.cameras:
            shapes[onnx_name_for_camera(cam)] = (1, self.history, 3, h, w)
        if self.task is not None:
            shapes["task_ids"] = shapes["task_mask"] = (1, self.task.length)
        if self.noise:
            shapes["noise"] = (1, self.horizon, self.action_dim)
        if self.rtc:
            shapes["prefix_actions"] = (1, self.horizon, self.action_dim)
            shapes["prefix_weights"] = (1, self.horizon)
        return shapes

    def bindings(self) -> tuple[InputBinding, ...]:
        """Observation keys → graph inputs, for the sidecar (shapes without the batch axis)."""
        shapes = self.input_shapes()
        out = []
        if self.state_dim:
            out.append(InputBinding(B.OBS_STATE, "state", shapes["state"][1:]))
        for cam in self.cameras:
            name = onnx_name_for_camera(cam)
            out.append(InputBinding(B.image_key(cam), name, shapes[name][1:], kind="image"))
        return tuple(out)

    # ------------------------------------------------------------------ sidecar
    def sidecar(
        self,
        *,
        model_file: str,
        sha256: str,
        producer: Mapping[str, Any],
        quantization: str | None = None,
        action_names: Sequence[str] | None = None,
    ) -> OnnxPolicySpec:
        """The ``policy.json`` contents for a graph with this layout."""
        task = None
        if self.task is not None:
            task = {
                "onnx_name": "task_ids",
                "mask_onnx_name": "task_mask",
                "length": self.task.length,
                "pad_id": self.task.pad_id,
                "table": {text: list(ids) for text, ids in self.task.table.items()},
            }
        return OnnxPolicySpec(
            model=model_file,
            model_sha256=sha256,
            chunk_size=self.horizon,
            action_dim=self.action_dim,
            action_names=tuple(action_names) if action_names else None,
            inputs=self.bindings(),
            output=OUTPUT,
            batch=1,
            normalization_in_graph=True,  # the policy's Normalizer is part of the graph
            normalization={},
            noise={"onnx_name": "noise", "shape": [self.horizon, self.action_dim]} if self.noise else None,
            task=task,
            rtc={"prefix_actions": "prefix_actions", "prefix_weights": "prefix_weights"} if self.rtc else None,
            execution=dict(self.execution) or None,
            quantization=quantization,
            producer=dict(producer),
            state_parts=self.state_parts or None,
        )
