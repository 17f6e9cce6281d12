"""Training checkpoints: what goes in, retention (last N + best), pointers, resume resolution.

``<run>/checkpoints/`` holds ``step_<9 digits>/`` directories written by
``librobot.core.checkpoint.save_checkpoint`` (built aside and renamed in, sha256 of every file in
the manifest), plus two pointer files rewritten atomically after each save: ``latest.json`` and
``best.json`` (step, directory, monitored metric and value). A checkpoint directory holds:

    model.safetensors            the training weights (full, unsharded)
    ema.safetensors              EMA weights (when enabled; the ones to evaluate and export)
    optimizer.safetensors        optimizer tensors; optimizer_layout.json: the rest of its state dict
    trainer_state.json           step, scheduler, grad scaler, EMA counters, data position, callbacks
    rng.json                     python/numpy/torch/CUDA RNG states of every rank
    config.json                  the resolved run config
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from librobot.core.checkpoint import (
    MANIFEST,
    join_tensors,
    load_checkpoint,
    read_json,
    save_checkpoint,
    split_tensors,
    verify_checkpoint,
    write_json,
)
from librobot.core.errors import CheckpointError
from librobot.core.logging import get_logger
from librobot.core.seeding import capture_rng_state, restore_rng_state
from librobot.train.checkpoint_checks import MISMATCH_FIX, NEW_RUN, check_model_state, check_trainer_state
from librobot.train.errors import CheckpointMismatchError, NoResumableCheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from librobot.train.trainer import Trainer

log = get_logger("train.checkpoint")
FORMAT = "librobot-train"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointManager:
    """The ``checkpoints/`` folder of a run: listing, pointers and pruning. Holds no state of its
    own, so it reads the same after a crash as before."""

    def __init__(self, root: str | Path, keep_last: int = 3) -> None:
        self.root = Path(root)
        self.keep_last = int(keep_last)

    def dir_for(self, step: int) -> Path:
        return self.root / f"step_{step:09d}"

    def step_dirs(self) -> list[tuple[int, Path]]:
        """Every ``step_*`` directory, oldest first, whether or not it is complete."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), c) for c in self.root.iterdir() if (m := _STEP_DIR.match(c.name)) and c.is_dir()]
        return sorted(found)

    def steps(self) -> list[tuple[int, Path]]:
        """Complete checkpoint directories (with a manifest), oldest first."""
        return [(step, path) for step, path in self.step_dirs() if (path / MANIFEST).is_file()]

    def read_pointer(self, name: str) -> dict[str, Any] | None:
        path = self.root / f"{name}.json"
        if not path.is_file():
            return None
        try:
            pointer = read_json(path)
        except CheckpointError:
            return None
        # The pointer names a sibling step directory and nothing else: a path read from a file
        # never leads outside the checkpoints folder.
        ok = isinstance(pointer, dict) and isinstance(pointer.get("path"), str) and _STEP_DIR.match(pointer["path"])
        return pointer if ok else None

    def write_pointer(self, name: str, step: int, **extra: Any) -> None:
        write_json(self.root / f"{name}.json", {"step": step, "path": self.dir_for(step).name, **extra})

    @staticmethod
    def problem(path: Path) -> str | None:
        """Why ``path`` cannot be loaded (a missing or corrupt file, named), or None when it verifies."""
        try:
            verify_checkpoint(path)
            return None
        except CheckpointError as exc:
            return str(exc)

    def resumable(self) -> tuple[Path | None, list[tuple[Path, str]]]:
        """The checkpoint to resume from: the one ``latest.json`` names, or else the newest that
        verifies; plus the damaged ones passed over on the way (path, reason), newest first."""
        order = []
        pointer = self.read_pointer("latest")
        if pointer is not None:
            named = self.root / pointer["path"]
            if named.is_dir():
                order.append(named)
            else:
                log.warning("latest.json names %s, which is missing; looking for another checkpoint", pointer["path"])
        order += [path for _, path in reversed(self.step_dirs())]
        damaged: list[tuple[Path, str]] = []
        for path in dict.fromkeys(order):
            reason = self.problem(path)
            if reason is None:
                return path, damaged
            damaged.append((path, reason))
        return None, damaged

    def latest(self) -> Path | None:
        """The checkpoint ``latest.json`` names, or else the newest one that verifies."""
        found, damaged = self.resumable()
        for path, reason in damaged:
            log.warning("skipping checkpoint %s: %s", path, reason)
        return found

    def best(self) -> Path | None:
        pointer = self.read_pointer("best")
        return None if pointer is None else self.root / pointer["path"]

    def prune(self) -> list[Path]:
        """Delete all but the newest ``keep_last`` checkpoints and the best one.

        A directory is renamed away first (one atomic step), so a crash mid-delete never leaves a
        half-deleted checkpoint that looks complete.
        """
        steps = self.steps()
        keep = {path for _, path in steps[-self.keep_last :]}
        for name in ("best", "latest"):
            pointer = self.read_pointer(name)
            if pointer is not None:
                keep.add(self.root / pointer["path"])
        removed = []
        for _, path in steps:
            if path not in keep:
                trash = self.root / f".trash-{path.name}-{uuid.uuid4().hex[:6]}"
                path.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)
                removed.append(path)
        self.clean_trash()
        return removed

    def clean_trash(self) -> None:
        if self.root.is_dir():
            for stale in self.root.glob(".trash-*"):
                shutil.rmtree(stale, ignore_errors=True)


def resolve_resume(resume: Any, run_dir: str | Path) -> Path | None:
    """The checkpoint directory to resume from.

    ``True``/``"auto"``/``"latest"``: the run folder's latest checkpoint, or a fresh start when it
    has none (so a preemptible job can always pass ``--resume``). A damaged latest checkpoint is
    passed over for the newest older one that verifies (with a warning); when checkpoints exist
    and none verifies, ``NoResumableCheckpointError``: a damaged checkpoint is never "start over".
    A path: a checkpoint directory, a ``checkpoints/`` folder or a run folder; naming one without
    a checkpoint is an error.
    """
    if resume is None or resume is False or resume == "":
        return None
    if resume is True or resume in ("auto", "latest"):
        found = _resumable(Path(run_dir) / "checkpoints", run_dir)
        if found is None:
            log.info("resume: no checkpoint in %s yet, starting from scratch", run_dir)
        return found
    path = Path(str(resume))
    if (path / MANIFEST).is_file():
        reason = CheckpointManager.problem(path)
        if reason is not None:
            raise NoResumableCheckpointError(
                f"cannot resume from {path}: {reason}. Restore it from a backup, pass another checkpoint "
                f"(--resume PATH), or {NEW_RUN}"
            )
        return path
    for root in (path / "checkpoints", path):
        if root.is_dir():
            found = _resumable(root, path)
            if found is not None:
                return found
    raise CheckpointError(
        f"--resume {path}: no checkpoint found there (expected a checkpoint directory, a run folder or its checkpoints/ folder)"
    )


def _resumable(root: Path, run_dir: str | Path) -> Path | None:
    """The checkpoint of ``root`` to resume from, None when it has none; raises when all are damaged."""
    found, damaged = CheckpointManager(root).resumable()
    if found is None and damaged:
        reasons = "; ".join(f"{path.name}: {reason}" for path, reason in damaged)
        raise NoResumableCheckpointError(
            f"cannot resume {run_dir}: none of its {len(damaged)} checkpoint(s) can be loaded ({reasons}). "
            f"Restore the damaged checkpoint from a backup and resume again, or {NEW_RUN}; "
            f"nothing in {run_dir} was changed"
        )
    if found is not None and damaged:
        step = int(_STEP_DIR.match(found.name).group(1))  # type: ignore[union-attr]
        log.warning(
            "resume: checkpoint %s is damaged (%s); resuming from the older %s instead: the steps after %d are "
            "trained again and their metrics.jsonl records replaced",
            ", ".join(path.name for path, _ in damaged),
            "; ".join(reason for _, reason in damaged),
            found.name,
            step,
        )
    return found


def _untie(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no shared storage (safetensors refuses tied weights)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"model state '{name}' is a {type(value).__name__}, not a tensor; it cannot be saved without pickling"
            )
        tensor = value.detach().cpu()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and tensor.numel():
            tensor = tensor.clone()
        seen.add(ptr)
        out[name] = tensor.contiguous()
    return out


def save_training_checkpoint(
    trainer: Trainer, manager: CheckpointManager, *, best: dict[str, Any] | None = None
) -> Path:
    """Write the checkpoint of ``trainer.step`` (collective: every rank calls it; rank 0 writes)."""
    step = trainer.step
    model_state = trainer.full_model_state()
    optim_state = trainer.full_optimizer_state()
    ema_state = trainer.ema.full_tensors() if trainer.ema is not None else None
    rng_states = trainer.dist.gather_json(capture_rng_state())
    path = manager.dir_for(step)
    if trainer.dist.is_main:
        layout, optim_tensors = split_tensors(optim_state)
        tensors: dict[str, Any] = {
            "model": _untie(model_state),
            "optimizer": {k: v.detach().cpu().contiguous() for k, v in optim_tensors.items()},
        }
        if ema_state is not None:
            tensors["ema"] = _untie(ema_state)
        documents = {
            "optimizer_layout": layout,
            "trainer_state": trainer.training_state(),
            "rng": {"ranks": rng_states},
            "config": trainer.config_dict,
        }
        metadata = {
            "format": FORMAT,
            "step": step,
            "world_size": trainer.dist.world_size,
            "inference_weights": "ema" if ema_state is not None else "model",
        }
        save_checkpoint(path, tensors=tensors, documents=documents, metadata=metadata)
        if best is not None:
            manager.write_pointer("best", step, **best)
        manager.write_pointer("latest", step)
        manager.prune()
    trainer.dist.barrier()
    return path


def restore_training_checkpoint(trainer: Trainer, path: str | Path) -> dict[str, Any]:
    """Load everything ``save_training_checkpoint`` wrote into ``trainer`` (every rank reads).

    Everything is checked before anything is loaded, so a checkpoint that does not fit raises a
    ``CheckpointError`` naming the checkpoint, what is wrong and the fix, and changes nothing.
    """
    ckpt = load_checkpoint(path, framework="pt")
    if ckpt.metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a training checkpoint (format {ckpt.metadata.get('format')!r}); it cannot be resumed"
        )
    absent = [f"{n}.safetensors" for n in ("model",) if n not in ckpt.tensors]
    absent += [f"{n}.json" for n in ("trainer_state", "optimizer_layout", "rng") if n not in ckpt.documents]
    if absent:
        raise CheckpointMismatchError(
            f"checkpoint {path} lacks {', '.join(absent)}: it was not written by this trainer. "
            f"Fix: resume from another checkpoint (--resume PATH), or {NEW_RUN}"
        )
    state = check_trainer_state(path, ckpt.documents["trainer_state"])
    ranks = ckpt.documents["rng"].get("ranks") if isinstance(ckpt.documents["rng"], dict) else None
    if not isinstance(ranks, list) or not all(isinstance(r, dict) for r in ranks):
        raise CheckpointMismatchError(
            f"checkpoint {path}: rng.json has no 'ranks' list of RNG states; it was not written by this trainer "
            f"or was edited. Fix: resume from another checkpoint (--resume PATH), or {NEW_RUN}"
        )
    check_model_state(path, ckpt.tensors["model"], trainer.module)
    try:
        _load_into(trainer, path, ckpt, state, ranks)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever torch said
        raise CheckpointMismatchError(
            f"checkpoint {path} could not be restored into this run ({detail[:400]}). Fix: {MISMATCH_FIX}"
        ) from exc
    return state


def _load_into(trainer: Trainer, path: str | Path, ckpt: Any, state: dict[str, Any], ranks: list[Any]) -> None:
    trainer.load_model_state(ckpt.tensors["model"])
    trainer.load_optimizer_state(join_tensors(ckpt.documents["optimizer_layout"], ckpt.tensors.get("optimizer", {})))
    if trainer.ema is not None:
        if "ema" not in ckpt.tensors:
            log.warning("%s has no EMA weights; the EMA restarts from the current weights", path)
            trainer.ema.load(trainer.ema_source_tensors(), {})
        else:
            trainer.ema.load(ckpt.tensors["ema"], state.get("ema") or {})
    trainer.load_training_state(state)
    if len(ranks) != trainer.dist.world_size:
        log.warning(
            "checkpoint written by %d processes, resumed by %d: RNG streams are re-derived, not restored",
            len(ranks),
            trainer.dist.world_size,
        )
        trainer.seed_training_rng(offset=state["step"])
    else:
        restore_rng_state(ranks[trainer.dist.rank])


def load_inference_weights(path: str | Path, module: torch.nn.Module, *, prefer_ema: bool = True) -> str:
    """Load a training checkpoint's weights into ``module`` for evaluation or export.

    EMA weights win when present (and ``prefer_ema``); frozen parameters, which the EMA does not
    track, come from the training weights. Returns "ema" or "model".
    """
    ckpt = load_checkpoint(path, framework="pt")
    if "model" not in ckpt.tensors:
        raise CheckpointError(f"{path} holds no model weights")
    weights = dict(ckpt.tensors["model"])
    used = "model"
    if prefer_ema and "ema" in ckpt.tensors:
        weights.update(ckpt.tensors["ema"])
        used = "ema"
    module.load_state_dict(weights, strict=True)
    return used
