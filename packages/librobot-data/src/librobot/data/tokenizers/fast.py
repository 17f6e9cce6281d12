"""FAST action tokenizer (Pertsch et al., 2025): DCT over time, quantise, compress with BPE.

For a chunk x [H, A] (normalised to about [-1, 1]): c = DCT-II(x) along time (orthonormal), q =
round(c * scale), flattened frequency-major (every dimension's lowest frequency first, so the
important coefficients lead and trailing zeros compress well), shifted by the smallest training
code to non-negative symbols, then BPE-encoded with merges learned from the dataset's chunks.

Round-trip error (decode(encode(x)) - x), when no code falls outside the training range:
each coefficient is off by at most 0.5/scale and the inverse DCT is orthonormal, so
- RMS error per chunk ≤ 0.5/scale
- max error per element ≤ 0.5·sqrt(H)/scale (each output is a unit-norm row times the errors).
Codes outside the training range are clipped to it (``error_bound`` then does not hold; ``fit`` on
representative data). numpy only; BPE is our own (``IntBPE``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from librobot.core.errors import ConfigError
from librobot.core.interfaces import ActionTokenizerInterface
from librobot.core.logging import get_logger
from librobot.data.tokenizers.bpe import IntBPE
from librobot.data.tokenizers.dct import dct, idct

log = get_logger("data.tokenizers")


class FASTTokenizer(ActionTokenizerInterface):
    """Create, then ``fit(chunks)`` on training action chunks [N, H, A]; or ``from_dict`` a saved one."""

    def __init__(self, scale: float = 10.0, vocab_size: int = 1024, min_frequency: int = 2) -> None:
        if scale <= 0 or vocab_size < 2:
            raise ConfigError(f"FAST needs scale > 0 and vocab_size >= 2, got {scale}, {vocab_size}")
        self.scale = float(scale)
        self.target_vocab = int(vocab_size)
        self.min_frequency = int(min_frequency)
        self.min_code = 0
        self.bpe: IntBPE | None = None

    def _codes(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 3:
            raise ConfigError(f"expected actions [N, H, A], got shape {list(actions.shape)}")
        return np.round(dct(actions, axis=1) * self.scale).astype(np.int64).reshape(len(actions), -1)

    def fit(self, actions: np.ndarray) -> FASTTokenizer:
        codes = self._codes(actions)
        self.min_code = int(codes.min())
        base = int(codes.max()) - self.min_code + 1
        if base > self.target_vocab:
            raise ConfigError(
                f"FAST: the quantised DCT codes span {base} values, more than vocab_size {self.target_vocab}; "
                f"lower scale ({self.scale}) or raise vocab_size"
            )
        self.bpe = IntBPE.train((row - self.min_code for row in codes), base, self.target_vocab, self.min_frequency)
        return self

    def _require_fit(self) -> IntBPE:
        if self.bpe is None:
            raise ConfigError("FAST tokenizer is not fitted: call fit(action_chunks) or load one with from_dict")
        return self.bpe

    @property
    def vocab_size(self) -> int:
        return self._require_fit().vocab_size

    def error_bound(self, horizon: int) -> float:
        """Largest per-element round-trip error for chunks whose codes lie in the training range."""
        return 0.5 * np.sqrt(horizon) / self.scale

    @property
    def rms_error_bound(self) -> float:
        return 0.5 / self.scale

    def encode(self, actions: np.ndarray) -> list[list[int]]:
        bpe = self._require_fit()
        codes = self._codes(actions) - self.min_code
        high = bpe.base_size - 1
        clipped = int(np.sum((codes < 0) | (codes > high)))
        if clipped:
            log.debug("FAST: %d codes outside the training range were clipped", clipped)
        return [bpe.encode(row.tolist()) for row in np.clip(codes, 0, high)]

    def decode(self, tokens: Sequence[Sequence[int]], horizon: int, action_dim: int) -> np.ndarray:
        bpe = self._require_fit()
        size = horizon * action_dim
        codes = np.full((len(tokens), size), -self.min_code, dtype=np.int64)  # missing codes decode to 0
        for i, seq in enumerate(tokens):
            symbols = bpe.decode(seq)[:size]
            codes[i, : len(symbols)] = symbols
        coeffs = (codes + self.min_code).reshape(len(tokens), horizon, action_dim) / self.scale
        return idct(coeffs, axis=1)

    def to_dict(self) -> dict[str, Any]:
        bpe = self._require_fit()
        return {
            "type": "fast",
            "scale": self.scale,
            "vocab_size": self.target_vocab,
            "min_frequency": self.min_frequency,
            "min_code": self.min_code,
            "base_size": bpe.base_size,
            "merges": [list(m) for m in bpe.merges],
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> FASTTokenizer:
        tok = cls(state["scale"], state["vocab_size"], state.get("min_frequency", 2))
        tok.min_code = int(state["min_code"])
        tok.bpe = IntBPE(state["base_size"], [tuple(m) for m in state["merges"]])
        return tok
