"""Instructions for an exported policy: tokenised in Python, fed to the graph as ids.

An ONNX graph cannot run a tokenizer, so the exporter tokenises a fixed set of instructions (the
sidecar's ``task.table``: text → the prompt ids the backbone's own ``tokenize(texts, num_views)``
builds, image placeholders and special ids included, from the text the policy gives its backbone,
``task_prompt``: OpenVLA-style wraps the instruction in its prompt) and the graph takes
``task_ids`` + ``task_mask``.
``OnnxPolicy`` looks a task up in the table and refuses others, so the edge needs no tokenizer.

Where the backbone tokenizer is available in Python (torch + librobot-models), any instruction can
be tokenised later with ``TaskTokenizer`` and fed to the graph as ids directly, or added to an
export's table with ``add_tasks`` (the graph is unchanged; the ids must fit its length ``L``, so
export with ``max_task_tokens`` to leave room).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.errors import ConfigError, SpecError


def task_prompt(policy: Any, text: str) -> str:
    """The text ``policy`` gives its backbone for an instruction: ``policy.prompt(text)`` where the
    framework wraps instructions in a prompt (OpenVLA-style), else the instruction itself."""
    prompt = getattr(policy, "prompt", None)
    return prompt(text) if inspect.ismethod(prompt) else text  # a method: not a submodule named so


def prompt_ids(vlm: Any, text: str, num_views: int) -> tuple[int, ...]:
    """The backbone's prompt ids for one instruction and ``num_views`` images (no padding)."""
    ids, mask = vlm.tokenize([text], num_views)
    row = ids[0][mask[0].bool()]
    return tuple(int(i) for i in row.tolist())


def pad_id(vlm: Any, num_views: int) -> int:
    """The id the backbone pads prompts with (read off a padded batch of two prompts)."""
    ids, mask = vlm.tokenize(["a", "a longer instruction to force padding"], num_views)
    padded = ids[0][~mask[0].bool()]
    return int(padded[0]) if padded.numel() else 0


def build_table(
    vlm: Any,
    tasks: Iterable[str],
    num_views: int,
    max_task_tokens: int | None = None,
    prompt: Callable[[str], str] | None = None,
) -> tuple[dict[str, tuple[int, ...]], int]:
    """(text → prompt ids, length L) for the given instructions; ``prompt`` turns an instruction
    into the text the backbone gets (``task_prompt``)."""
    table: dict[str, tuple[int, ...]] = {}
    for text in tasks:
        if not isinstance(text, str):
            raise ConfigError(f"tasks must be strings, got {type(text).__name__}")
        table[text] = prompt_ids(vlm, prompt(text) if prompt else text, num_views)
    if not table:
        raise ConfigError(
            "this policy reads the instruction, and an ONNX graph cannot tokenise text: pass the instructions "
            'it will be given, e.g. `librobot export CHECKPOINT --tasks "pick up the cube" "open the drawer"`'
        )
    longest = max(len(ids) for ids in table.values())
    if max_task_tokens is not None and longest > max_task_tokens:
        worst = max(table, key=lambda t: len(table[t]))
        raise ConfigError(
            f"task {worst!r} needs {longest} prompt ids, more than max_task_tokens={max_task_tokens}; "
            f"raise --max-task-tokens or shorten the instruction"
        )
    return table, max(longest, max_task_tokens or 0)


class TaskTokenizer:
    """Prompt ids for any instruction, shaped for an export's ``task_ids``/``task_mask`` inputs.

    ``TaskTokenizer(policy, spec)`` with the policy (``AbstractVLA.from_pretrained(folder)``), so its
    prompt is applied as ``predict_action`` applies it, and the export's sidecar
    (``load_sidecar(dir)[0]``). A bare backbone (``policy.vlm``) is accepted for policies that give
    it the instruction as is."""

    def __init__(self, policy: Any, spec: Any) -> None:
        if spec.task is None:
            raise ConfigError("this export takes no instruction (its policy never reads text)")
        backbone = getattr(policy, "vlm", None)
        self.vlm = policy if backbone is None else backbone
        self.policy = None if backbone is None else policy
        self.spec = spec
        producer = spec.producer or {}
        self.num_views = int(producer.get("prompt_views", len([b for b in spec.inputs if b.kind == "image"])))
        self.length = int(spec.task["length"])
        self.pad = int(spec.task.get("pad_id", 0))

    def ids(self, text: str) -> tuple[int, ...]:
        ids = prompt_ids(self.vlm, task_prompt(self.policy, text), self.num_views)
        if len(ids) > self.length:
            raise SpecError(
                f"task {text!r} tokenises to {len(ids)} ids; this export's graph takes at most {self.length} "
                f"(re-export with --max-task-tokens {len(ids)} or more)"
            )
        return ids

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``task_ids`` and ``task_mask`` rows [L] (int64, right-padded) for one instruction."""
        row = self.ids(text)
        ids = np.full(self.length, self.pad, np.int64)
        ids[: len(row)] = row
        mask = np.zeros(self.length, np.int64)
        mask[: len(row)] = 1
        return ids, mask


def add_tasks(export_dir: str | Path, tasks: Iterable[str], policy_folder: str | Path) -> Mapping[str, Any]:
    """Tokenise more instructions with the policy's own backbone and add them to an export's table
    (the sidecar is rewritten atomically; the graph and its checksum are untouched)."""
    from dataclasses import replace

    from librobot.models.frameworks.base import AbstractVLA
    from librobot.serve.sidecar import load_sidecar, save_sidecar, sidecar_path

    spec, _ = load_sidecar(export_dir)
    tokenizer = TaskTokenizer(AbstractVLA.from_pretrained(policy_folder), spec)
    table = {k: list(v) for k, v in spec.task["table"].items()}
    for text in tasks:
        table[text] = list(tokenizer.ids(text))
    new = replace(spec, task={**spec.task, "table": table})
    save_sidecar(sidecar_path(export_dir), new)
    return new.task
