"""Shared fixtures for the action-head tests: tiny per-head settings and a variable-length DCT
tokenizer standing in for FAST (the real FAST tokenizer lives in librobot-data, which
librobot-models must not import)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from librobot.core.interfaces import ActionTokenizerInterface
from librobot.core.registry import get_registry


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: coefficients = M @ x, and x = M.T @ coefficients."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * (i + 0.5) * k / n)
    m[0] /= np.sqrt(2.0)
    return m


class DCTTokenizer(ActionTokenizerInterface):
    """FAST without BPE: per-dimension DCT over time, coefficients scaled and rounded to integers in
    [-K, K] (id = q + K), frequency-major; trailing zero coefficients are dropped, so smooth chunks
    give short, variable-length sequences."""

    def __init__(self, scale: float = 10.0, max_abs: int = 40) -> None:
        self.scale, self.max_abs = float(scale), int(max_abs)

    @property
    def vocab_size(self) -> int:
        return 2 * self.max_abs + 1

    def encode(self, actions: np.ndarray) -> list[list[int]]:
        actions = np.asarray(actions, dtype=np.float64)
        coeffs = np.einsum("kh,nha->nka", dct_matrix(actions.shape[1]), actions)
        q = np.clip(np.rint(coeffs * self.scale), -self.max_abs, self.max_abs).astype(np.int64)
        out = []
        for chunk in q:
            flat = chunk.reshape(-1)  # frequency-major: all dims of frequency 0 first
            nz = np.flatnonzero(flat)
            length = int(nz[-1]) + 1 if nz.size else 1
            out.append((flat[:length] + self.max_abs).tolist())
        return out

    def decode(self, tokens: Sequence[Sequence[int]], horizon: int, action_dim: int) -> np.ndarray:
        out = np.zeros((len(tokens), horizon, action_dim))
        for i, seq in enumerate(tokens):
            flat = np.zeros(horizon * action_dim)
            vals = np.asarray(list(seq)[: horizon * action_dim], dtype=np.float64) - self.max_abs
            flat[: vals.size] = vals
            out[i] = dct_matrix(horizon).T @ (flat.reshape(horizon, action_dim) / self.scale)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "max_abs": self.max_abs}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> DCTTokenizer:
        return cls(**state)


@pytest.fixture
def dct_tokenizer_registered():
    """DCTTokenizer registered as tokenizer 'test-dct' for the duration of a test."""
    registry = get_registry("tokenizer")
    registry.register("test-dct", obj=DCTTokenizer)
    try:
        yield DCTTokenizer
    finally:
        registry.unregister("test-dct")


# Tiny settings per registered head: fast on 2 CPU cores, still learning.
TINY: dict[str, dict[str, Any]] = {
    "mlp_oft": dict(hidden_dim=64, num_blocks=1),
    "act": dict(hidden_dim=64, num_heads=4, encoder_depth=1, decoder_depth=1, latent_dim=8),
    "autoregressive": dict(hidden_dim=64, depth=1, num_heads=4),
    "fast": dict(hidden_dim=64, depth=1, num_heads=4),
    "diffusion": dict(hidden_dim=64, depth=1, num_heads=4, num_train_timesteps=50, num_inference_steps=10),
    "ddpm": dict(hidden_dim=64, depth=1, num_heads=4, num_train_timesteps=50),
    "ddim": dict(hidden_dim=64, depth=1, num_heads=4, num_train_timesteps=50, num_inference_steps=10),
    "edm": dict(hidden_dim=64, depth=1, num_heads=4, num_inference_steps=10),
    "flow_matching": dict(hidden_dim=64, depth=1, num_heads=4, num_inference_steps=10),
    "ot_cfm": dict(hidden_dim=64, depth=1, num_heads=4, num_inference_steps=10),
    "fc_decoder": dict(hidden_dim=64),
    "lstm_decoder": dict(hidden_dim=64, lstm_layers=1),
    "gpt_decoder": dict(hidden_dim=64, depth=1, num_heads=4),
    "hybrid": dict(hidden_dim=64, num_bins=4),
}


@pytest.fixture
def tiny() -> dict[str, dict[str, Any]]:
    return TINY
