"""Parity of an exported graph with the torch policy, on fresh random inputs and fresh noise.

The reference is ``model.predict_action`` itself (real tokenizer, the framework's own sampling
loop), not the traced wrapper, so a baked-in constant, a wrong task id or a dropped input shows up.
Errors are reported three ways: in robot units, on the normalised scale (divided by the action
normaliser's per-dimension scale; the units the policy computes in), and relative to the range of
the reference actions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from librobot.core import batch as B
from librobot.serve.export.graph import graph_inputs, random_inputs, torch_reference
from librobot.serve.export.layout import GraphLayout


def action_scale(model: Any) -> np.ndarray:
    """Per-dimension scale of the action normaliser (1 where actions are not normalised)."""
    item = model.normalizer.state()["features"].get(B.ACTION, {})
    if item.get("mode", "identity") == "identity":
        return np.ones(model.config.action_dim)
    return np.asarray(item["scale"], np.float64)


def random_prefix(
    layout: GraphLayout, rng: np.random.Generator, reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """An RTC prefix that disagrees with the free chunk: its first steps shifted, weights 1 → 0."""
    h = layout.horizon
    k = max(1, h // 2)
    actions = reference.astype(np.float32) + rng.normal(0.0, 0.5, reference.shape).astype(np.float32)
    weights = np.zeros((1, h), np.float32)
    weights[0, :k] = np.linspace(1.0, 0.2, k, dtype=np.float32)
    return actions, weights


def measure(
    model: Any,
    layout: GraphLayout,
    run: Callable[[dict[str, np.ndarray]], np.ndarray],
    *,
    trials: int = 3,
    seed: int = 0,
    tasks: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Max errors of ``run(feeds) -> [1, H, A]`` against torch over ``trials`` random draws (each task
    of the table in turn; with RTC inputs, every second trial carries a prefix)."""
    rng = np.random.default_rng(seed)
    if tasks is None:
        tasks = list(layout.task.table) if layout.task is not None else [None]
    scale = action_scale(model)
    worst = {"max_abs": 0.0, "max_abs_normalized": 0.0, "max_rel_to_range": 0.0}
    checked = []
    for i in range(max(trials, len(tasks))):
        task = tasks[i % len(tasks)]
        obs = random_inputs(layout, rng)
        noise = rng.standard_normal((1, layout.horizon, layout.action_dim)).astype(np.float32) if layout.noise else None
        feeds = graph_inputs(layout, obs, task, noise)
        if layout.rtc and i % 2 == 1:
            free = torch_reference(model, layout, feeds, task)
            feeds = graph_inputs(layout, obs, task, noise, random_prefix(layout, rng, free))
        ref = torch_reference(model, layout, feeds, task).astype(np.float64)
        got = np.asarray(run(feeds), np.float64)
        if got.shape != ref.shape:
            raise AssertionError(f"exported output has shape {list(got.shape)}, torch {list(ref.shape)}")
        err = np.abs(got - ref)
        if not np.isfinite(err).all():
            err = np.full_like(err, np.inf)
        span = float(ref.max() - ref.min()) or 1.0
        worst["max_abs"] = max(worst["max_abs"], float(err.max()))
        worst["max_abs_normalized"] = max(worst["max_abs_normalized"], float((err / scale).max()))
        worst["max_rel_to_range"] = max(worst["max_rel_to_range"], float(err.max() / span))
        checked.append({"task": task, "rtc_prefix": bool(layout.rtc and i % 2 == 1)})
    return {**worst, "trials": checked, "seed": seed}
