"""Checks that a training checkpoint fits the run resuming it, before anything is loaded: the
model's keys and shapes, and the fields of ``trainer_state.json`` the resume reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from librobot.train.errors import CheckpointMismatchError

NEW_RUN = "start a new run in another folder (--run-dir PATH or name=NEW_NAME)"
MISMATCH_FIX = f"resume with the config that made the checkpoint (its config.json), or {NEW_RUN}"


def _first(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def check_model_state(path: str | Path, found: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Raise ``CheckpointMismatchError`` naming the first missing, unexpected and mis-shaped keys
    when a checkpoint's weights do not fit ``model`` (full shapes, also under FSDP)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if hasattr(v, "shape")}
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shaped = [
        f"{k} (checkpoint {list(found[k].shape)}, model {list(shape)})"
        for k, shape in expected.items()
        if k in found and tuple(found[k].shape) != shape
    ]
    parts = [
        f"{len(names)} {what}: {_first(names)}"
        for what, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped))
        if names
    ]
    if parts:
        raise CheckpointMismatchError(
            f"checkpoint {path} holds weights of another model than the one being resumed "
            f"({type(model).__name__}): {'; '.join(parts)}. Fix: {MISMATCH_FIX}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_trainer_state(path: str | Path, state: Any) -> dict[str, Any]:
    """Raise ``CheckpointMismatchError`` naming each field of ``trainer_state.json`` that is missing
    or of the wrong type (only what the resume reads); return the state."""
    if not isinstance(state, dict):
        problems = [f"it is a {type(state).__name__}, not an object"]
    else:
        problems = []
        for key, ok, what in (
            ("step", lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
            ("data", lambda v: isinstance(v, dict), "an object"),
            ("scheduler", lambda v: isinstance(v, dict), "an object"),
        ):
            if key not in state:
                problems.append(f"no '{key}' ({what} is required)")
            elif not ok(state[key]):
                problems.append(f"'{key}' is {state[key]!r}, expected {what}")
        data = state.get("data")
        if isinstance(data, dict):
            bad = [k for k in ("epoch", "batch_in_epoch", "batch_size", "world_size") if not _is_int(data.get(k))]
            problems += [f"'data.{k}' is missing or not an integer" for k in bad]
        for key in ("callbacks", "window", "ema", "scaler"):
            if state.get(key) is not None and not isinstance(state[key], dict):
                problems.append(f"'{key}' is a {type(state[key]).__name__}, expected an object")
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint {path}: trainer_state.json cannot be used: {'; '.join(problems)}; it was not written by "
            f"this trainer or was edited. Fix: restore the checkpoint from a backup, resume from another one "
            f"(--resume PATH), or {NEW_RUN}"
        )
    return state
