"""Offline evaluation: how far predicted chunks are from the demonstrations on held-out episodes,
next to two policies that learned nothing, so a user can tell when a policy has not learned.

Errors are in the dataset's units (the policy un-normalises its predictions), per action
dimension and overall, over the steps that are not padding. Baselines, on the same samples:

- ``hold``: keep the robot where it is. An action element named like a state element (PushT's
  target x, y and the agent's x, y) holds that state value; any other element (a velocity or delta:
  Meta-World's dx, dy, dz, grip) is 0. Without element names, an action as wide as the state holds it.
- ``repeat_last``: the previous frame's action for the whole chunk.

Samples carry the previous action under ``PREVIOUS_ACTION`` (``WithPreviousAction`` reads it with
the chunk); the first frame of an episode has none and is left out of every figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from librobot.core import batch as B
from librobot.core.errors import ConfigError

PREVIOUS_ACTION = "action.previous"  # [A]: the action of frame t-1
PREVIOUS_IS_PAD = "action.previous_is_pad"  # bool: frame t is the first of its episode
NOT_CLEARLY_BETTER = 0.8  # the policy's error must be below this fraction of the best baseline's


def hold_indices(
    action_names: Sequence[str] | None, state_names: Sequence[str] | None, action_dim: int, state_dim: int
) -> list[int | None] | None:
    """For each action element, the state element that holds the robot still (None: hold with 0);
    None overall when there is no state to hold. In a state joined from several vectors
    (``data.state_keys``) a name the robot's own ``observation.state`` shares with another part is
    ``state.<name>``: that element is the robot's."""
    if not state_dim:
        return None
    if action_names and state_names:
        where = {name: i for i, name in enumerate(state_names)}
        return [where.get(name, where.get(f"state.{name}")) for name in action_names]
    return list(range(action_dim)) if action_dim == state_dim else [None] * action_dim


class WithPreviousAction:
    """Samples of a window dataset whose action window starts one frame early (see
    ``with_previous_action``), split into the chunk (``action`` [H, A]) and the previous action
    (``PREVIOUS_ACTION`` [A], ``PREVIOUS_IS_PAD``)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        window, pad = sample[B.ACTION], sample[B.ACTION_IS_PAD]
        sample[PREVIOUS_ACTION], sample[PREVIOUS_IS_PAD] = window[0], pad[0]
        sample[B.ACTION], sample[B.ACTION_IS_PAD] = window[1:], pad[1:]
        return sample


def with_previous_action(make_dataset: Callable[..., Any], horizon: int) -> WithPreviousAction:
    """``make_dataset(**kw)`` builds a librobot-data window dataset; it is built with its action
    window from t-1 to t+H-1 (LeRobot-style ``delta_timestamps``) and wrapped."""
    fps = make_dataset().fps
    deltas = [(i - 1) / fps for i in range(horizon + 1)]
    return WithPreviousAction(make_dataset(delta_timestamps={B.ACTION: deltas}))


class _ErrorSums:
    def __init__(self) -> None:
        self.squared: Any = 0.0
        self.absolute: Any = 0.0

    def add(self, predicted: Any, target: Any, valid: Any) -> None:
        err = (predicted.float() - target) * valid
        self.squared = self.squared + (err**2).sum((0, 1))
        self.absolute = self.absolute + err.abs().sum((0, 1))

    def result(self, count: Any) -> dict[str, Any]:
        mse = (self.squared / count.clamp_min(1)).numpy()
        l1 = (self.absolute / count.clamp_min(1)).numpy()
        return {
            "mse": float(np.mean(mse)),
            "l1": float(np.mean(l1)),
            "mse_per_dim": mse.tolist(),
            "l1_per_dim": l1.tolist(),
        }


def evaluate_offline(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 32,
    max_batches: int | None = None,
    hold: Sequence[int | None] | None = None,
) -> dict[str, Any]:
    """``{"mse", "l1", "mse_per_dim", "l1_per_dim", "samples"}`` of ``model.predict_action`` vs the
    data; with samples carrying ``PREVIOUS_ACTION`` also ``"baselines"`` (``hold`` when ``hold``
    maps action elements to state elements, see ``hold_indices``; ``repeat_last``) and ``"verdict"``."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    sums = {"policy": _ErrorSums(), "hold": _ErrorSums(), "repeat_last": _ErrorSums()}
    count: Any = None
    samples, with_baselines = 0, None
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        target = batch[B.ACTION].float()
        valid = (
            (~batch[B.ACTION_IS_PAD]).float().unsqueeze(-1)
            if B.ACTION_IS_PAD in batch
            else torch.ones_like(target[..., :1])
        )
        with_baselines = PREVIOUS_ACTION in batch
        if with_baselines:  # the first frame of an episode has no previous action: left out everywhere
            valid = valid * (~batch[PREVIOUS_IS_PAD]).float().view(-1, 1, 1)
        predicted = model.predict_action(batch).float().cpu()
        sums["policy"].add(predicted, target, valid)
        if with_baselines:
            sums["repeat_last"].add(batch[PREVIOUS_ACTION].float().unsqueeze(1).expand_as(target), target, valid)
            if hold is not None:
                sums["hold"].add(_hold_chunk(batch, hold, target), target, valid)
        count = valid.sum((0, 1)) if count is None else count + valid.sum((0, 1))
        samples += int((valid.sum((1, 2)) > 0).sum())
    if count is None:
        raise ConfigError("the evaluation dataset is empty: no held-out samples to compare against")
    metrics: dict[str, Any] = {**sums["policy"].result(count), "samples": samples}
    if with_baselines:
        names = ["repeat_last"] + (["hold"] if hold is not None else [])
        metrics["baselines"] = {name: sums[name].result(count) for name in names}
        metrics["verdict"] = verdict(metrics)
    return metrics


def _hold_chunk(batch: dict[str, Any], hold: Sequence[int | None], target: Any) -> Any:
    import torch

    state = batch[B.OBS_STATE].float()
    state = state[:, -1] if state.dim() == 3 else state  # the latest observation frame
    held = torch.stack([state[:, j] if j is not None else torch.zeros(len(state)) for j in hold], dim=-1)
    return held.unsqueeze(1).expand_as(target)


def verdict(metrics: dict[str, Any]) -> dict[str, Any]:
    """Whether the policy is clearly better than the best baseline (error ratio < 0.8), overall."""
    best_name, best = min(((n, b["l1"]) for n, b in metrics["baselines"].items()), key=lambda nb: nb[1])
    ratio = metrics["l1"] / best if best > 0 else float("inf")
    learned = ratio < NOT_CLEARLY_BETTER
    text = (
        f"policy error is {ratio:.2f}x the best baseline's ({best_name})"
        if learned
        else f"WARNING: the policy is not clearly better than '{best_name}' (error {ratio:.2f}x of it, needs < "
        f"{NOT_CLEARLY_BETTER}): it may not have learned. Check that it uses its inputs (e.g. the camera), the "
        "training budget, and the data"
    )
    return {"learned": learned, "ratio_to_best_baseline": ratio, "best_baseline": best_name, "text": text}


def summary_lines(metrics: dict[str, Any], action_names: Sequence[str] | None = None) -> list[str]:
    """A per-dimension table of L1 errors: policy, then each baseline; then the verdict."""
    dims = len(metrics["l1_per_dim"])
    names = list(action_names or [f"a{i}" for i in range(dims)])
    rows = {"policy": metrics, **metrics.get("baselines", {})}
    width = max(12, *(len(n) + 2 for n in names))
    lines = [f"offline L1 error on {metrics['samples']} held-out samples (dataset units)"]
    lines.append(f"{'':<12}" + "".join(f"{n:>{width}}" for n in [*names, "mean"]))
    for row, m in rows.items():
        lines.append(f"{row:<12}" + "".join(f"{v:>{width}.4g}" for v in [*m["l1_per_dim"], m["l1"]]))
    if "verdict" in metrics:
        lines.append(metrics["verdict"]["text"])
    return lines
