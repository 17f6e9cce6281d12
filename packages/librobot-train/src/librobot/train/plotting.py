"""The PNG of the training curves in the run folder (matplotlib's Agg canvas, no pyplot: cheaper
to import, no global figure state; written atomically)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from librobot.core.checkpoint import atomic_write_bytes


def _series(records: Iterable[Mapping[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        step = record.get("step")
        if not isinstance(step, int):
            continue
        for key, value in record.items():
            if (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and (key.startswith(("train/", "val/", "eval/", "lr/")) and key != "val/samples")
            ):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(step)
                ys.append(float(value))
    return series


def plot_curves(records: Iterable[Mapping[str, Any]], path: str | Path, *, title: str = "") -> Path | None:
    """Losses/metrics (log scale when all positive) and learning rates against the step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = _series(records)
    if not series:
        return None
    losses = {k: v for k, v in series.items() if not k.startswith("lr/")}
    lrs = {k: v for k, v in series.items() if k.startswith("lr/")}
    fig = Figure(figsize=(12, 4.2))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    for key, (xs, ys) in sorted(losses.items()):
        left.plot(xs, ys, label=key, marker="o" if len(xs) < 30 else None, markersize=3)
    if losses and all(y > 0 for _, ys in losses.values() for y in ys):
        left.set_yscale("log")
    left.set_title("losses and metrics")
    for key, (xs, ys) in sorted(lrs.items()):
        right.plot(xs, ys, label=key)
    right.set_title("learning rate")
    for ax, content in ((left, losses), (right, lrs)):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if content:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(
        left=0.06, right=0.98, bottom=0.12, top=0.86 if title else 0.92, wspace=0.18
    )  # tight_layout costs ~1 s
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())
