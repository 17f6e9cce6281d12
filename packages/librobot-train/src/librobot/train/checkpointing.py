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

    def steps(self) -> list[tuple[int, Path]]:
        """Complete checkpoint directories (with a manifest), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            match = _STEP_DIR.match(child.name)
            if match and (child / MANIFEST).is_file():
                found.append((int(match.group(1)), child))
        return sorted(found)

    def read_pointer(self, name: str) -> dict[str, Any] | None:
        path = self.root / f"{name}.json"
        if not path.is_file():
            return None
        try:
            pointer = read_json(path)
        except CheckpointError:
            return None
        return pointer if isinstance(pointer, dict) and "path" in pointer else None

    def write_pointer(self, name: str, step: int, **extra: Any) -> None:
        write_json(self.root / f"{name}.json", {"step": step, "path": self.dir_for(step).name, **extra})

    def _verified(self, path: Path) -> bool:
        try:
            verify_checkpoint(path)
            return True
        except CheckpointError as exc:
            log.warning("skipping checkpoint %s: %s", path, exc)
            return False

    def latest(self) -> Path | None:
        """The checkpoint ``latest.json`` names, or else the newest one that verifies."""
        pointer = self.read_pointer("latest")
        if pointer is not None:
            path = self.root / pointer["path"]
            if path.is_dir() and self._verified(path):
                return path
            log.warning("latest.json names %s, which is missing or corrupt; looking for another", pointer["path"])
        for _, path in reversed(self.steps()):
            if self._verified(path):
                return path
        return None

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
    has none (so a preemptible job can always pass ``--resume``). A path: a checkpoint directory,
    a ``checkpoints/`` folder or a run folder; naming one without a checkpoint is an error.
    """
    if resume is None or resume is False or resume == "":
        return None
    if resume is True or resume in ("auto", "latest"):
        found = CheckpointManager(Path(run_dir) / "checkpoints").latest()
        if found is None:
            log.info("resume: no checkpoint in %s yet, starting from scratch", run_dir)
        return found
    path = Path(str(resume))
    if (path / MANIFEST).is_file():
        return path
    for root in (path / "checkpoints", path):
        if root.is_dir():
            found = CheckpointManager(root).latest()
            if found is not None:
                return found
    raise CheckpointError(
        f"--resume {path}: no checkpoint found there (expected a checkpoint directory, a run folder or its checkpoints/ folder)"
    )


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
    """Load everything ``save_training_checkpoint`` wrote into ``trainer`` (every rank reads)."""
    ckpt = load_checkpoint(path, framework="pt")
    if ckpt.metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a training checkpoint (format {ckpt.metadata.get('format')!r}); it cannot be resumed"
        )
    state = ckpt.documents["trainer_state"]
    trainer.load_model_state(ckpt.tensors["model"])
    trainer.load_optimizer_state(join_tensors(ckpt.documents["optimizer_layout"], ckpt.tensors.get("optimizer", {})))
    if trainer.ema is not None:
        if "ema" not in ckpt.tensors:
            log.warning("%s has no EMA weights; the EMA restarts from the current weights", path)
            trainer.ema.load(trainer.ema_source_tensors(), {})
        else:
            trainer.ema.load(ckpt.tensors["ema"], state.get("ema", {}))
    trainer.load_training_state(state)
    ranks = ckpt.documents["rng"]["ranks"]
    if len(ranks) != trainer.dist.world_size:
        log.warning(
            "checkpoint written by %d processes, resumed by %d: RNG streams are re-derived, not restored",
            len(ranks),
            trainer.dist.world_size,
        )
        trainer.seed_training_rng(offset=state["step"])
    else:
        restore_rng_state(ranks[trainer.dist.rank])
    return state


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
