"""Exponential moving average of the trainable weights, with a warmup of the decay.

After the optimizer step ``s`` (1-based), for ``n = s - start_step`` (the number of steps the EMA
has been running):

    decay(n) = 0                                               if n <= 0 (the EMA copies the weights)
             = max_decay                                       if warmup_power <= 0
             = clamp(1 - (1 + n / inv_gamma) ** -warmup_power, min_decay, max_decay)   otherwise
    ema <- decay * ema + (1 - decay) * weights                 every ``update_every`` steps

Buffers (e.g. BatchNorm statistics) are copied, not averaged. Works on plain tensors and on
FSDP2's sharded DTensors (the update is elementwise, so each rank averages its own shard).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def _is_dtensor(t: torch.Tensor) -> bool:
    return type(t).__name__ == "DTensor"


def _full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (a collective for DTensors: every rank must call it)."""
    return t.full_tensor() if _is_dtensor(t) else t  # type: ignore[attr-defined]


def _assign_full(dst: torch.Tensor, full: torch.Tensor) -> None:
    """Copy a whole tensor into ``dst``, which may be a shard (DTensor) of it."""
    if _is_dtensor(dst):
        from torch.distributed.tensor import distribute_tensor

        local = distribute_tensor(full.to(dst.device), dst.device_mesh, dst.placements).to_local()  # type: ignore[attr-defined]
        dst.to_local().copy_(local)  # type: ignore[attr-defined]
    else:
        dst.copy_(full)


class EMA:
    """Shadow copies of ``module``'s trainable parameters (and its buffers)."""

    def __init__(
        self,
        module: nn.Module,
        *,
        max_decay: float = 0.999,
        min_decay: float = 0.0,
        warmup_power: float = 0.75,
        inv_gamma: float = 1.0,
        start_step: int = 0,
        update_every: int = 1,
    ) -> None:
        self.max_decay, self.min_decay = float(max_decay), float(min_decay)
        self.warmup_power, self.inv_gamma = float(warmup_power), float(inv_gamma)
        self.start_step, self.update_every = int(start_step), int(update_every)
        self.num_updates = 0
        self.last_decay = 0.0
        with torch.no_grad():
            # Low-precision weights are averaged in fp32: bf16 cannot hold decay*ema + (1-decay)*w.
            self.params = {
                n: p.detach().clone().to(torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype)
                for n, p in module.named_parameters()
                if p.requires_grad
            }
            self.buffers = {n: b.detach().clone() for n, b in module.named_buffers()}

    def decay(self, step: int) -> float:
        """The decay applied by the update after optimizer step ``step`` (see the module docstring)."""
        n = step - self.start_step
        if n <= 0:
            return 0.0
        if self.warmup_power <= 0:
            return self.max_decay
        value = 1.0 - (1.0 + n / self.inv_gamma) ** -self.warmup_power
        return float(min(max(value, self.min_decay), self.max_decay))

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> bool:
        """Fold the current weights in after optimizer step ``step``; True when it updated."""
        if step % self.update_every:
            return False
        d = self.decay(step)
        params = dict(module.named_parameters())
        for name, shadow in self.params.items():
            shadow.lerp_(params[name].detach().to(shadow.dtype), 1.0 - d)
        for name, buf in module.named_buffers():
            if name in self.buffers:
                self.buffers[name].copy_(buf)
        self.num_updates += 1
        self.last_decay = d
        return True

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        params = dict(module.named_parameters())
        buffers = dict(module.named_buffers())
        for name, shadow in self.params.items():
            params[name].copy_(shadow)
        for name, buf in self.buffers.items():
            buffers[name].copy_(buf)

    @contextmanager
    def swapped_in(self, module: nn.Module) -> Iterator[None]:
        """Run the block with the EMA weights in ``module``; the training weights come back after."""
        with torch.no_grad():
            backup_p = {n: p.detach().clone() for n, p in module.named_parameters() if n in self.params}
            backup_b = {n: b.detach().clone() for n, b in module.named_buffers() if n in self.buffers}
        self.copy_to(module)
        try:
            yield
        finally:
            with torch.no_grad():
                params = dict(module.named_parameters())
                buffers = dict(module.named_buffers())
                for name, value in backup_p.items():
                    params[name].copy_(value)
                for name, value in backup_b.items():
                    buffers[name].copy_(value)

    # ------------------------------------------------------------------ state
    def full_tensors(self) -> dict[str, torch.Tensor]:
        """Whole EMA tensors keyed like the module's state dict (collective under FSDP)."""
        out = {n: _full(t).detach().cpu() for n, t in self.params.items()}
        out.update({n: _full(t).detach().cpu() for n, t in self.buffers.items()})
        return out

    def state(self) -> dict[str, Any]:
        return {"num_updates": self.num_updates, "last_decay": self.last_decay}

    @torch.no_grad()
    def load(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        missing = [n for n in list(self.params) + list(self.buffers) if n not in tensors]
        if missing:
            from librobot.core.errors import CheckpointError

            raise CheckpointError(
                f"EMA state lacks {len(missing)} tensors (first: {missing[:3]}); was it saved from another model?"
            )
        for name, shadow in {**self.params, **self.buffers}.items():
            _assign_full(shadow, tensors[name])
        self.num_updates = int(state.get("num_updates", 0))
        self.last_decay = float(state.get("last_decay", 0.0))
