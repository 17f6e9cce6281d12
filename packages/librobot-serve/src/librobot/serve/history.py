"""Observation history for policies that read the last T_obs frames (RoboVLMs, Octo, diffusion
policies): a policy trained on windows of T_obs frames must see the same windows when it runs.

Windows are built like the training windows of librobot-data: frames t-T_obs+1 .. t, oldest first,
and before the episode's first frame that frame is repeated.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from librobot.core import batch as B
from librobot.core.errors import ConfigError, SpecError


class ObservationHistory:
    """The last ``steps`` observations of an episode; ``window`` stacks them per key."""

    def __init__(self, steps: int) -> None:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"the observation history needs steps >= 1, got {steps!r}")
        self.steps = steps
        self._frames: deque[dict[str, np.ndarray]] = deque(maxlen=steps)

    def reset(self) -> None:
        """A new episode: forget every frame."""
        self._frames.clear()

    def window(self, observation: Mapping[str, Any], *, commit: bool = True) -> dict[str, Any]:
        """``observation`` with each ``observation.*`` value stacked with its history [T_obs, ...];
        other keys as given. ``commit=False`` leaves the history unchanged (a look-ahead)."""
        # copies: a driver may reuse its buffers for the next frame
        frame = {k: np.array(v, copy=True) for k, v in observation.items() if k.startswith(B.OBS_PREFIX)}
        frames = [*self._frames, frame][-self.steps :]
        if commit:
            self._frames.append(frame)
        frames = [frames[0]] * (self.steps - len(frames)) + frames
        out = {k: v for k, v in observation.items() if not k.startswith(B.OBS_PREFIX)}
        for key, value in frame.items():
            past = [f.get(key) for f in frames]
            if any(p is None or p.shape != value.shape for p in past):
                shapes = [None if p is None else list(p.shape) for p in past]
                raise SpecError(
                    f"'{key}' changed within the episode (history shapes {shapes}); every frame of an "
                    "episode needs the same keys and shapes (call reset() between episodes)"
                )
            out[key] = np.stack(past)
        return out
