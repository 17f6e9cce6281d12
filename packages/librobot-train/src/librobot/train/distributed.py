"""Process group, device and model wrapping — all PyTorch's own machinery.

Launch with ``torchrun`` (it sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR): the trainer joins the
process group (NCCL on CUDA, gloo on CPU) and wraps the model with DistributedDataParallel, or
shards it with FSDP2 (``torch.distributed.fsdp.fully_shard``) for models that do not fit on one
device. A single process needs no launcher.

Small control messages (RNG states, evaluation metrics) travel as JSON bytes in uint8 tensors, so
nothing is pickled, not even on the wire.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from librobot.core.errors import ConfigError
from librobot.core.logging import get_logger

log = get_logger("train.distributed")


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={spec!r} but CUDA is not available here; use 'cpu' or 'auto'")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def _default_units(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Each child holding parameters is an FSDP unit; containers without a forward of their own
    (ModuleList, ModuleDict) are looked into instead, since FSDP2 gathers on forward."""
    units = []
    for name, child in module.named_children():
        if not any(True for _ in child.parameters()):
            continue
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            units += _default_units(child, f"{prefix}{name}.")
        else:
            units.append((f"{prefix}{name}", child))
    return units


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    strategy: str = "none"  # none | ddp | fsdp
    backend: str | None = None
    owns_group: bool = False  # True when this context initialised the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def setup(cls, section: Any = None, device: str = "auto") -> DistContext:
        """Join the process group announced by the launcher's environment, if any."""
        strategy = getattr(section, "strategy", "auto")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if dist.is_available() and dist.is_initialized():
            world, rank = dist.get_world_size(), dist.get_rank()
        dev = resolve_device(device, local_rank)
        if world == 1:
            if strategy == "fsdp":
                log.info("distributed.strategy=fsdp with one process: nothing to shard, training unsharded")
            return cls(rank=0, world_size=1, local_rank=0, device=dev, strategy="none")
        if strategy == "none":
            raise ConfigError(
                f"distributed.strategy=none but WORLD_SIZE={world}; use ddp, fsdp or auto, or launch one process"
            )
        backend = getattr(section, "backend", None) or ("nccl" if dev.type == "cuda" else "gloo")
        owns = False
        if not dist.is_initialized():
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            timeout = datetime.timedelta(seconds=float(getattr(section, "timeout_s", 1800.0)))
            dist.init_process_group(backend=backend, timeout=timeout)
            owns = True
        return cls(
            rank=rank,
            world_size=world,
            local_rank=local_rank,
            device=dev,
            strategy="ddp" if strategy == "auto" else strategy,
            backend=backend,
            owns_group=owns,
        )

    def shutdown(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    # ------------------------------------------------------------------ wrapping
    def wrap(self, module: nn.Module, section: Any = None) -> nn.Module:
        """The model the training step calls: DDP around ``module``, or ``module`` sharded in place."""
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            return DistributedDataParallel(
                module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(getattr(section, "find_unused_parameters", False)),
            )
        if self.strategy == "fsdp":
            self._shard(module, section)
        return module

    def _shard(self, module: nn.Module, section: Any) -> None:
        from torch.distributed.fsdp import fully_shard

        # fully_shard does not broadcast: make every rank start from rank 0's weights.
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)
        patterns = list(getattr(section, "fsdp_shard", []) or [])
        reshard = bool(getattr(section, "fsdp_reshard_after_forward", True))
        chosen = []
        for name, sub in module.named_modules():
            if name and any(type(sub).__name__ == p or fnmatch.fnmatchcase(name, p) for p in patterns):
                chosen.append((name, sub))
        if patterns and not chosen:
            raise ConfigError(
                f"distributed.fsdp_shard {patterns} matches no submodule class or name of {type(module).__name__}"
            )
        if not patterns:
            chosen = _default_units(module)
        for _, sub in reversed(chosen):  # innermost first
            fully_shard(sub, reshard_after_forward=reshard)
        fully_shard(module, reshard_after_forward=reshard)
        log.info("FSDP2: sharded %d submodules + root over %d ranks", len(chosen), self.world_size)

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
        return tensor

    def any_of(self, *flags: bool) -> list[bool]:
        """For each flag: True on every rank when it is True on at least one (one collective)."""
        if not self.distributed:
            return [bool(f) for f in flags]
        t = torch.tensor([1.0 if f else 0.0 for f in flags], device=self._comm_device())
        return [v > 0 for v in self.all_reduce(t, "max").tolist()]

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")

    def gather_json(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (JSON-able), on every rank."""
        if not self.distributed:
            return [obj]
        data = torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8).to(self._comm_device())
        size = torch.tensor([data.numel()], device=data.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        dist.all_gather(sizes, size)
        longest = int(max(s.item() for s in sizes))
        padded = torch.zeros(longest, dtype=torch.uint8, device=data.device)
        padded[: data.numel()] = data
        chunks = [torch.zeros_like(padded) for _ in range(self.world_size)]
        dist.all_gather(chunks, padded)
        return [json.loads(c[: int(s.item())].cpu().numpy().tobytes().decode()) for c, s in zip(chunks, sizes)]

    def broadcast_json(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        return self.gather_json(obj if self.is_main else None)[0]
