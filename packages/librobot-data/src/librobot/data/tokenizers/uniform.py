"""Uniform binning (RT-2 / OpenVLA): each action value in [low, high] → one of ``num_bins`` tokens.

Values are clipped to [low, high], binned into equal bins and decoded to bin centers, so for inputs
inside the range the round-trip error is at most half a bin, ``(high - low) / (2 * num_bins)``
(1/256 for 256 bins on [-1, 1]). Tokens are ``token_offset + bin``, so they can sit at any place in
a model's vocabulary; ``vocab_size`` is ``token_offset + num_bins``. Chunks [H, A] are flattened
time-major (all of step 0's dimensions first). numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from librobot.core.errors import ConfigError
from librobot.core.interfaces import ActionTokenizerInterface


class UniformBinTokenizer(ActionTokenizerInterface):
    def __init__(self, num_bins: int = 256, low: float = -1.0, high: float = 1.0, token_offset: int = 0) -> None:
        if num_bins < 2 or not high > low or token_offset < 0:
            raise ConfigError(
                f"need num_bins >= 2, high > low, token_offset >= 0; got {num_bins}, [{low}, {high}], {token_offset}"
            )
        self.num_bins, self.low, self.high, self.token_offset = (
            int(num_bins),
            float(low),
            float(high),
            int(token_offset),
        )

    @property
    def vocab_size(self) -> int:
        return self.token_offset + self.num_bins

    @property
    def error_bound(self) -> float:
        """Largest |decode(encode(x)) - x| for x in [low, high]."""
        return (self.high - self.low) / (2 * self.num_bins)

    def bins(self, actions: np.ndarray) -> np.ndarray:
        x = np.clip(np.asarray(actions, dtype=np.float64), self.low, self.high)
        return np.minimum(np.floor((x - self.low) / (self.high - self.low) * self.num_bins), self.num_bins - 1).astype(
            np.int64
        )

    def encode(self, actions: np.ndarray) -> list[list[int]]:
        actions = np.asarray(actions)
        if actions.ndim != 3:
            raise ConfigError(f"expected actions [N, H, A], got shape {list(actions.shape)}")
        return (self.bins(actions).reshape(len(actions), -1) + self.token_offset).tolist()

    def decode(self, tokens: Sequence[Sequence[int]], horizon: int, action_dim: int) -> np.ndarray:
        size = horizon * action_dim
        out = np.empty((len(tokens), size))
        middle = self.num_bins // 2
        for i, seq in enumerate(tokens):
            ids = np.asarray(list(seq)[:size], dtype=np.int64) - self.token_offset
            ids = np.concatenate([np.clip(ids, 0, self.num_bins - 1), np.full(size - len(ids), middle)])  # best effort
            out[i] = self.low + (ids + 0.5) * (self.high - self.low) / self.num_bins
        return out.reshape(len(tokens), horizon, action_dim)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "uniform-bins",
            "num_bins": self.num_bins,
            "low": self.low,
            "high": self.high,
            "token_offset": self.token_offset,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> UniformBinTokenizer:
        return cls(state["num_bins"], state["low"], state["high"], state.get("token_offset", 0))
