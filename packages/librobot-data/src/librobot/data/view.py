"""A quick visual check of one episode: PNG plots of its actions and states, a strip of camera
frames per camera, and an HTML page tying them together (matplotlib, off-screen)."""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.checkpoint import atomic_write_bytes, atomic_write_text
from librobot.core.extras import require
from librobot.data.episode import Episode, is_image_key

EXTRA = "librobot-data[viz]"


def _pyplot() -> Any:
    matplotlib = require("matplotlib", extra=EXTRA, purpose="drawing episode plots")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def _plot_series(plt: Any, key: str, values: np.ndarray, fps: float, names: Any, path: Path) -> None:
    values = values.reshape(len(values), -1)
    t = np.arange(len(values)) / fps
    fig, ax = plt.subplots(figsize=(8, 3))
    for d in range(values.shape[1]):
        label = names[d] if names is not None and d < len(names) else f"{key}[{d}]"
        ax.plot(t, values[:, d], label=label, linewidth=1.2)
    ax.set_xlabel("time (s)")
    ax.set_title(key)
    if values.shape[1] <= 12:
        ax.legend(fontsize=7, ncol=min(values.shape[1], 6), loc="upper right")
    ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def _frame_strip(plt: Any, key: str, frames: np.ndarray, fps: float, count: int, path: Path) -> list[int]:
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)).tolist()
    fig, axes = plt.subplots(1, len(picks), figsize=(1.8 * len(picks), 2.0), squeeze=False)
    for ax, i in zip(axes[0], picks):
        image = frames[i]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
        ax.set_title(f"t={i / fps:.2f}s", fontsize=7)
        ax.axis("off")
    fig.suptitle(key, fontsize=9)
    _save(fig, path)
    plt.close(fig)
    return picks


def render_episode(
    episode: Episode,
    out_dir: str | Path,
    *,
    fps: float,
    title: str = "",
    names: dict[str, Any] | None = None,
    max_frames: int = 8,
) -> Path:
    """Write ``<key>.png`` files and ``index.html`` for ``episode`` into ``out_dir``; returns the page."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for key, values in episode.frames.items():
        file = key.replace("/", "_") + ".png"
        if is_image_key(key):
            picks = _frame_strip(plt, key, values, fps, max_frames, out / file)
            caption = f"frames {picks} of {len(values)}"
        else:
            _plot_series(plt, key, values.astype(np.float64), fps, (names or {}).get(key), out / file)
            flat = values.reshape(len(values), -1).astype(np.float64)
            caption = f"{flat.shape[1]} dims, min {flat.min():.4g}, max {flat.max():.4g}"
        sections.append(f'<h2>{html.escape(key)}</h2><p>{html.escape(caption)}</p><img src="{html.escape(file)}">')
    tasks = list(dict.fromkeys(episode.frame_tasks()))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>{t}</title>"
        "<style>body{{font-family:sans-serif;margin:2em}} img{{max-width:100%}}</style></head><body>"
        "<h1>{t}</h1><p>{n} frames at {fps:g} fps ({secs:.2f} s). Task: {task}</p>{body}</body></html>"
    ).format(
        t=html.escape(title or "episode"),
        n=episode.length,
        fps=fps,
        secs=episode.length / fps,
        task=html.escape(" | ".join(tasks)),
        body="\n".join(sections),
    )
    atomic_write_text(out / "index.html", page)
    return out / "index.html"
