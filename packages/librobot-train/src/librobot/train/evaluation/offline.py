"""Offline evaluation: how far predicted chunks are from the demonstrations on held-out episodes.

Errors are in the dataset's units (the policy un-normalises its predictions), per action
dimension and overall, over the steps that are not padding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from librobot.core import batch as B


def evaluate_offline(model: Any, dataset: Any, *, batch_size: int = 32, max_batches: int | None = None) -> dict[str, Any]:
    """``{"mse", "l1", "mse_per_dim", "l1_per_dim", "samples"}`` of ``model.predict_action`` vs the data."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    squared = absolute = count = None
    samples = 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        target = batch[B.ACTION].float()
        predicted = model.predict_action(batch).float().cpu()
        valid = (~batch[B.ACTION_IS_PAD]).float().unsqueeze(-1) if B.ACTION_IS_PAD in batch else torch.ones_like(target[..., :1])
        err = (predicted - target) * valid
        step_sq, step_abs, step_n = (err**2).sum((0, 1)), err.abs().sum((0, 1)), valid.sum((0, 1))
        squared = step_sq if squared is None else squared + step_sq
        absolute = step_abs if absolute is None else absolute + step_abs
        count = step_n if count is None else count + step_n
        samples += target.shape[0]
    if squared is None or count is None or absolute is None:
        raise ValueError("the evaluation dataset is empty")
    mse = (squared / count.clamp_min(1)).numpy()
    l1 = (absolute / count.clamp_min(1)).numpy()
    return {
        "mse": float(np.mean(mse)),
        "l1": float(np.mean(l1)),
        "mse_per_dim": mse.tolist(),
        "l1_per_dim": l1.tolist(),
        "samples": samples,
    }
