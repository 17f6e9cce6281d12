"""One optimizer step (micro-batches, autocast, accumulation, clipping, scaler, EMA) and the
validation-loss loop. The Trainer owns the state; these functions do the arithmetic."""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import torch

from librobot.core.batch import OBS_IMAGES, validate_batch
from librobot.core.errors import SpecError
from librobot.train.errors import TrainingError
from librobot.train.sampler import eval_batches

if TYPE_CHECKING:  # pragma: no cover
    from librobot.train.trainer import Trainer

_CONTRACT_KEYS = ("observation.state", "action", "task")


def move_batch(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Tensors to ``device``; uint8 camera frames become the contract's float images in [0, 1]."""
    if isinstance(batch, Mapping):
        out = {}
        for key, value in batch.items():
            value = move_batch(value, device, non_blocking)
            if isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and str(key).startswith(OBS_IMAGES + "."):
                value = value.to(torch.float32).div_(255.0)
            out[key] = value
        return out
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(move_batch(v, device, non_blocking) for v in batch)
    return batch


def check_batch(batch: Any) -> None:
    """Check the first batch against the batch contract when it uses the contract's keys."""
    if not isinstance(batch, Mapping):
        raise TrainingError(f"the data must yield dict samples (the batch contract), got {type(batch).__name__}")
    if any(k in batch for k in _CONTRACT_KEYS) or any(str(k).startswith(OBS_IMAGES + ".") for k in batch):
        try:
            validate_batch(batch)
        except SpecError as exc:
            raise SpecError(f"the first training batch breaks the batch contract: {exc}") from None


def batch_size_of(batch: Any) -> int:
    if isinstance(batch, Mapping):
        for value in batch.values():
            if isinstance(value, torch.Tensor) and value.ndim:
                return int(value.shape[0])
            if isinstance(value, (list, tuple)):
                return len(value)
    raise TrainingError("cannot tell the batch size: the batch has no tensor or list entries")


def split_output(out: Any, model: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, named terms)`` from a model output, or an error naming what is wrong."""
    name = type(model).__name__
    if not isinstance(out, Mapping) or "loss" not in out:
        got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise TrainingError(
            f"{name}.forward(batch) must return a dict with a scalar 'loss' (and optional named terms); got {got}"
        )
    loss = out["loss"]
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0 or not loss.is_floating_point():
        raise TrainingError(
            f"{name}: output 'loss' must be a 0-dim float tensor, got {getattr(loss, 'shape', type(loss).__name__)}"
        )
    if not loss.requires_grad and torch.is_grad_enabled():
        raise TrainingError(
            f"{name}: output 'loss' does not require grad: is every parameter frozen, or was it computed under no_grad?"
        )
    terms = {
        k: v.detach()
        for k, v in out.items()
        if k != "loss" and isinstance(v, torch.Tensor) and v.ndim == 0 and v.is_floating_point()
    }
    return loss, terms


@contextmanager
def _grad_sync(trainer: Trainer, sync: bool) -> Any:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if trainer.ddp is not None and not sync:
        with trainer.ddp.no_sync():
            yield
        return
    if trainer.dist.strategy == "fsdp":
        trainer.module.set_requires_gradient_sync(sync)  # type: ignore[operator]
    yield


def autocast(trainer: Trainer) -> Any:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(trainer.precision)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=trainer.dist.device.type, dtype=dtype)


def train_step(trainer: Trainer) -> dict[str, Any]:
    """Run ``grad_accum_steps`` micro-batches and one optimizer update; return raw step figures."""
    cfg = trainer.config.train
    accum = cfg.grad_accum_steps
    model, optimizer, scaler = trainer.forward_model, trainer.optimizer, trainer.scaler
    trainer.module.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=trainer.dist.device)
    term_sums: dict[str, torch.Tensor] = {}
    samples = 0
    for micro in range(accum):
        batch = next(trainer.data)
        if not trainer.batch_checked:
            check_batch(batch)
            trainer.batch_checked = True
        batch = move_batch(batch, trainer.dist.device, non_blocking=trainer.dist.device.type == "cuda")
        samples += batch_size_of(batch)
        with _grad_sync(trainer, micro == accum - 1), autocast(trainer):
            loss, terms = split_output(model(batch), trainer.module)
        scaled = loss.float() / accum
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += loss.detach().double()
        for key, value in terms.items():
            term_sums[key] = term_sums.get(key, 0.0) + value.double()
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = None
    if cfg.max_grad_norm is not None:
        grad_norm = clip_gradients(trainer.trainable_parameters, cfg.max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    trainer.scheduler.step()
    if trainer.ema is not None:
        trainer.ema.update(trainer.module, trainer.step + 1)
    return {
        "loss": loss_sum / accum,
        "terms": {k: v / accum for k, v in term_sums.items()},
        "grad_norm": grad_norm,
        "samples": samples,
    }


def clip_gradients(parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale gradients so their global L2 norm is at most ``max_norm``; return the norm before.

    Under FSDP the norm is a DTensor over all shards; it is returned as a plain tensor.
    """
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    if type(norm).__name__ == "DTensor":
        norm = norm.full_tensor()  # type: ignore[attr-defined]
    return norm.detach()


@torch.no_grad()
def validation_loss(trainer: Trainer) -> dict[str, float]:
    """Mean loss (and terms) over the validation set, weighted by batch size, over all ranks.

    Under FSDP every forward is a collective, so ranks run the same number of batches: a rank that
    ran out repeats its last batch with weight 0.
    """
    cfg = trainer.config
    module = trainer.module
    was_training = module.training
    module.eval()
    loader = eval_batches(
        trainer.val_data,
        batch_size=cfg.eval.batch_size or cfg.train.batch_size,
        rank=trainer.dist.rank,
        world_size=trainer.dist.world_size,
        seed=cfg.train.seed,
        num_workers=cfg.train.num_workers,
    )
    limit = cfg.eval.max_batches
    lockstep = trainer.dist.strategy == "fsdp"
    local = iter(loader)
    rounds = None
    if lockstep:
        try:
            available = len(loader)
        except TypeError:  # an IterableDataset without __len__
            if limit is None:
                raise TrainingError(
                    "FSDP evaluation over an IterableDataset without __len__ needs eval.max_batches"
                ) from None
            available = limit
        n = torch.tensor([float(min(available, limit or available))])
        rounds = int(trainer.dist.all_reduce(n, "max").item())
    names: list[str] = []
    sums: dict[str, float] = {}
    count, done = 0.0, 0
    last: Any = None
    while True:
        if rounds is not None and done >= rounds:
            break
        if limit is not None and done >= limit:
            break
        batch = next(local, None)
        weight = 1.0
        if batch is None:
            if rounds is None or last is None:
                break
            batch, weight = last, 0.0
        last = batch
        batch = move_batch(batch, trainer.dist.device)
        with autocast(trainer):
            out = module(batch)
        loss, terms = split_output(out, module)
        n = batch_size_of(batch) * weight
        for key, value in {"loss": loss.detach(), **terms}.items():
            if key not in sums:
                names.append(key)
                sums[key] = 0.0
            sums[key] += float(value) * n
        count += n
        done += 1
    module.train(was_training)
    # every rank must agree on the metric names before the all-reduce
    names = trainer.dist.broadcast_json(names)
    packed = torch.tensor([sums.get(k, 0.0) for k in names] + [count], dtype=torch.float64)
    trainer.dist.all_reduce(packed)
    total = float(packed[-1])
    if total == 0:
        return {}
    return {f"val/{k}": float(packed[i]) / total for i, k in enumerate(names)} | {"val/samples": total}


def finite_or_raise(value: float, what: str, step: int) -> float:
    if not math.isfinite(value):
        raise TrainingError(
            f"{what} became {value} by step {step}: lower optimizer.lr, enable train.max_grad_norm, "
            "use bf16 instead of fp16, or check the data for NaN/inf"
        )
    return value
