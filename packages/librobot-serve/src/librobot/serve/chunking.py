"""Turning action chunks into one action per control step: temporal ensembling (ACT) and the
alignment of a chunk that arrives late (asynchronous inference)."""

from __future__ import annotations

from collections import deque

import numpy as np

from librobot.core.errors import ConfigError


class TemporalEnsembler:
    """ACT's temporal ensembling: a chunk is predicted at every step, and the action for step t is
    the weighted mean of every prediction made for t, w_i = exp(−m·i) with i = 0 the *oldest*
    prediction (Zhao et al. 2023). m > 0 favours old predictions (smoother), m < 0 new ones
    (more reactive), m = 0 is a plain mean."""

    def __init__(self, coeff: float = 0.01) -> None:
        if not np.isfinite(coeff):
            raise ConfigError(f"ensemble_coeff must be finite, got {coeff}")
        self.coeff = float(coeff)
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (start step, chunk [H, A]), oldest first

    def reset(self) -> None:
        self._chunks.clear()

    def add(self, start: int, chunk: np.ndarray) -> None:
        self._chunks.append((int(start), np.asarray(chunk, dtype=np.float64)))

    def action(self, step: int) -> np.ndarray:
        """The ensembled action for ``step``; drops chunks that end before it."""
        while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) <= step:
            self._chunks.popleft()
        preds = [chunk[step - start] for start, chunk in self._chunks if 0 <= step - start < len(chunk)]
        if not preds:
            raise ConfigError(f"no chunk covers step {step}; add one first")
        weights = np.exp(-self.coeff * np.arange(len(preds)))
        return (weights[:, None] * np.stack(preds)).sum(0) / weights.sum()


def align_chunk(chunk: np.ndarray, start: int, now: int) -> tuple[np.ndarray, int]:
    """The part of a chunk computed from the observation of step ``start`` that is still in the
    future at step ``now`` (latency compensation), and how many of its actions were skipped."""
    delay = now - start
    if delay < 0:
        raise ConfigError(f"a chunk cannot start in the future (start {start} > now {now})")
    return chunk[delay:], min(delay, len(chunk))
