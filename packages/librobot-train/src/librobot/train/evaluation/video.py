"""Rollout videos: RGB frames → an mp4 (H.264, plays in browsers) written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_video(path: str | Path, frames: Sequence[np.ndarray], *, fps: float, scale: int = 2) -> Path:
    """Encode ``frames`` ([H, W, 3] uint8) to ``path``; small sim frames are upscaled ``scale``×
    (nearest) so the video is watchable, and sides are made even as H.264's yuv420p needs."""
    from librobot.data.formats.video import VideoSettings, encode_video

    path = Path(path)
    stack = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
    if scale > 1:
        stack = stack.repeat(scale, axis=1).repeat(scale, axis=2)
    stack = stack[:, : stack.shape[1] // 2 * 2, : stack.shape[2] // 2 * 2]
    settings = VideoSettings("libx264", "yuv420p", {"crf": "23", "g": str(max(1, int(fps)))})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        encode_video(tmp, stack, fps=fps, settings=settings)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
