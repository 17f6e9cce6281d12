"""Optimizers (AdamW, Lion, SGD) and the param groups they get: per-module learning rates and
no weight decay on biases, norms and embeddings.

Parameters are grouped by name: a config group ``{name: vlm, match: [vlm], lr: 1e-5}`` takes every
trainable parameter whose name matches one of its patterns (an fnmatch glob, or a plain module
prefix: ``vlm`` matches ``vlm.*``). The first matching group wins; the rest go to ``default``.
Each group is split into a ``/decay`` and a ``/no_decay`` part.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from librobot.core.errors import ConfigError
from librobot.core.logging import get_logger

log = get_logger("train.optim")


@dataclass
class GroupSpec:
    name: str
    match: Sequence[str]
    lr: float | None = None
    weight_decay: float | None = None


@dataclass
class ParamGroupPlan:
    """What ``build_param_groups`` decided, for logging and tests."""

    groups: list[dict[str, Any]] = field(default_factory=list)  # torch param groups ("params" + options)
    names: dict[str, list[str]] = field(default_factory=dict)  # group name → parameter names


def matches(name: str, pattern: str) -> bool:
    """fnmatch glob on the full parameter name, or a module prefix when the pattern has no wildcard."""
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern or name.startswith(pattern + ".")


def _no_decay_ids(module: nn.Module, embeddings: bool) -> set[int]:
    """Parameters owned by normalisation layers (any class named *Norm*) and embedding tables."""
    ids: set[int] = set()
    for sub in module.modules():
        is_norm = "norm" in type(sub).__name__.lower()
        is_embedding = embeddings and isinstance(sub, (nn.Embedding, nn.EmbeddingBag))
        if is_norm or is_embedding:
            ids.update(id(p) for p in sub.parameters(recurse=False))
    return ids


def build_param_groups(
    module: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    groups: Iterable[GroupSpec | Any] = (),
    no_decay: Sequence[str] = (),
    no_decay_embeddings: bool = True,
) -> ParamGroupPlan:
    """Split the trainable parameters of ``module`` into named torch param groups.

    No weight decay for: parameters with fewer than 2 dimensions (biases, norm scales), parameters
    of norm layers and (optionally) embeddings, and names matching a ``no_decay`` glob.
    """
    specs = [g if isinstance(g, GroupSpec) else GroupSpec(g.name, list(g.match), g.lr, g.weight_decay) for g in groups]
    skip_decay = _no_decay_ids(module, no_decay_embeddings)
    buckets: dict[tuple[str, bool], list[tuple[str, nn.Parameter]]] = {}
    matched_any: dict[str, bool] = {s.name: False for s in specs}
    for name, param in module.named_parameters():
        owner = next((s for s in specs if any(matches(name, p) for p in s.match)), None)
        if owner is not None:
            matched_any[owner.name] = True
        if not param.requires_grad:
            continue
        decay = (
            param.ndim >= 2 and id(param) not in skip_decay and not any(fnmatch.fnmatchcase(name, p) for p in no_decay)
        )
        buckets.setdefault((owner.name if owner else "default", decay), []).append((name, param))
    top = sorted({n.split(".", 1)[0] for n, _ in module.named_parameters()})
    for spec in specs:
        if not matched_any[spec.name]:
            raise ConfigError(
                f"optimizer param group '{spec.name}' (match {list(spec.match)}) matches no parameter of "
                f"{type(module).__name__}; top-level modules are: {', '.join(top)}. Fix the patterns or drop the group."
            )
        if not any(key[0] == spec.name for key in buckets):
            log.warning("optimizer param group '%s' matches only frozen parameters; it is left out", spec.name)
    if not buckets:
        raise ConfigError(f"{type(module).__name__} has no trainable parameters (all have requires_grad=False)")
    plan = ParamGroupPlan()
    by_name = {s.name: s for s in specs}
    for group_name in [s.name for s in specs] + ["default"]:
        chosen: GroupSpec | None = by_name.get(group_name)
        for decay in (True, False):
            members = buckets.get((group_name, decay))
            if not members:
                continue
            full_name = f"{group_name}/{'decay' if decay else 'no_decay'}"
            group_wd = chosen.weight_decay if chosen and chosen.weight_decay is not None else weight_decay
            plan.groups.append(
                {
                    "name": full_name,
                    "params": [p for _, p in members],
                    "lr": chosen.lr if chosen and chosen.lr is not None else lr,
                    "weight_decay": group_wd if decay else 0.0,
                }
            )
            plan.names[full_name] = [n for n, _ in members]
    return plan


# ------------------------------------------------------------------------------------ Lion
class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    Per parameter, with momentum ``m``::

        update = sign(beta1 * m + (1 - beta1) * g)
        p     <- p * (1 - lr * weight_decay) - lr * update
        m     <- beta2 * m + (1 - beta2) * g

    Its updates have unit magnitude per element, so it wants a ~3-10x smaller lr than AdamW.
    """

    def __init__(
        self, params: Any, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0
    ) -> None:
        if lr <= 0:
            raise ConfigError(f"Lion: lr must be > 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"Lion: betas must be in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg = state["exp_avg"]
                grad = p.grad
                if wd:
                    p.mul_(1.0 - lr * wd)
                update = exp_avg.mul(beta1).add_(grad, alpha=1.0 - beta1).sign_()
                p.add_(update, alpha=-lr)
                exp_avg.mul_(beta2).add_(grad, alpha=1.0 - beta2)
        return loss


# ------------------------------------------------------------------------------------ factories
def _options(betas: Sequence[float] | None, eps: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if betas is not None:
        options["betas"] = tuple(float(b) for b in betas)
    if eps is not None:
        options["eps"] = float(eps)
    return options


def adamw(
    param_groups: list[dict[str, Any]],
    *,
    lr: float,
    weight_decay: float = 0.0,
    betas: Sequence[float] | None = None,
    eps: float | None = None,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """torch.optim.AdamW (decoupled weight decay), fused where every parameter allows it.

    The fused kernel updates each tensor in one pass instead of ~10 elementwise ones: for a 262M
    parameter model on a 2-core AMX Xeon a step took 190 ms against 610 ms with ``foreach``. Passing
    ``fused`` or ``foreach`` explicitly keeps that choice."""
    if "fused" not in kwargs and "foreach" not in kwargs and _fusable(param_groups):
        kwargs["fused"] = True
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay, **_options(betas, eps), **kwargs)


def _fusable(param_groups: list[dict[str, Any]]) -> bool:
    """Plain floating-point tensors on a CPU or CUDA device (not sharded DTensors, not meta)."""
    params = [p for group in param_groups for p in group["params"]]
    return bool(params) and all(
        type(p.data) is torch.Tensor and p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )


def lion(
    param_groups: list[dict[str, Any]],
    *,
    lr: float,
    weight_decay: float = 0.0,
    betas: Sequence[float] | None = None,
    eps: float | None = None,
) -> torch.optim.Optimizer:
    """Lion (sign of interpolated momentum); ``eps`` is accepted and ignored (Lion has none)."""
    options = _options(betas, None)
    return Lion(param_groups, lr=lr, weight_decay=weight_decay, **options)


def sgd(
    param_groups: list[dict[str, Any]],
    *,
    lr: float,
    weight_decay: float = 0.0,
    betas: Sequence[float] | None = None,
    eps: float | None = None,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """torch.optim.SGD (``betas``/``eps`` do not apply and must be left unset)."""
    if betas is not None or eps is not None:
        raise ConfigError("sgd takes no betas/eps; set optimizer.kwargs.momentum instead")
    return torch.optim.SGD(param_groups, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov)


def build_optimizer(module: nn.Module, section: Any) -> tuple[torch.optim.Optimizer, ParamGroupPlan]:
    """The optimizer named in the ``optimizer`` config section, over ``module``'s param groups."""
    from librobot.core.registry import get_registry

    plan = build_param_groups(
        module,
        lr=section.lr,
        weight_decay=section.weight_decay,
        groups=section.param_groups,
        no_decay=section.no_decay,
        no_decay_embeddings=section.no_decay_embeddings,
    )
    optimizer = get_registry("optimizer").create(
        section.name,
        plan.groups,
        lr=section.lr,
        weight_decay=section.weight_decay,
        betas=section.betas,
        eps=section.eps,
        **dict(section.kwargs),
    )
    return optimizer, plan
