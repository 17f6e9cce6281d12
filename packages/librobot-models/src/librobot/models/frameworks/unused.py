"""Backbone parameters a framework never reads, kept frozen.

A framework uses part of its VLM: π0 reads only the per-layer prefix keys/values (so the last
layer's attention output, feed-forward and final norm cannot matter), most frameworks never use
the LM head, Florence-2's decoder or LLaVA's last vision layer. Such parameters would get no
gradient — an optimizer would still carry their state (a 7B model's LM head is 0.5B parameters)
and the contract "every trainable parameter gets a gradient" would fail. ``AbstractVLA`` finds them once, with a tiny forward of what the framework reads
(``backbone_probe``: one 32×32 image, a one-letter prompt) and a walk of its autograd graph, so it
holds for every backbone without knowing its module names, and keeps them frozen, also after
``unfreeze_backbone()``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

Probe = Callable[[nn.Module, Tensor], list[Tensor]]


def parameters_without_path(vlm: nn.Module, probe: Probe) -> list[str]:
    """Names of backbone parameters from which no autograd path leads to ``probe(vlm, image)``."""
    params = dict(vlm.named_parameters())
    flags = {n: p.requires_grad for n, p in params.items()}
    was_training = vlm.training
    try:
        vlm.eval()
        for p in params.values():
            p.requires_grad_(True)
        with torch.enable_grad():
            image = torch.zeros(1, 3, 32, 32, device=next(vlm.parameters()).device)
            reached = graph_leaves(probe(vlm, image))
    finally:
        for n, p in params.items():
            p.requires_grad_(flags[n])
        vlm.train(was_training)
    return [n for n, p in params.items() if id(p) not in reached]


def graph_leaves(roots: list[Tensor]) -> set[int]:
    """ids of the leaf tensors (parameters) the autograd graph of ``roots`` reaches."""
    seen: set[object] = set()
    found: set[int] = set()
    stack = [r.grad_fn for r in roots if r.grad_fn is not None]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        variable = getattr(fn, "variable", None)
        if variable is not None:
            found.add(id(variable))
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return found
