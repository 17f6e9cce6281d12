"""Action tokenizers (uniform bins, FAST) and the text tokenizer: round-trip error bounds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from librobot.core.interfaces import ActionTokenizerInterface
from librobot.core.registry import get_registry
from librobot.data.tokenizers import tokenizer_from_dict
from librobot.data.tokenizers.bpe import IntBPE, train, train_reference
from librobot.data.tokenizers.dct import dct, dct_matrix, idct
from librobot.data.tokenizers.fast import FASTTokenizer
from librobot.data.tokenizers.text import TextTokenizer


def smooth_chunks(n: int, horizon: int = 16, dims: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[None, :, None]
    freq, phase, amp = (
        rng.uniform(0.2, 1.5, (n, 1, dims)),
        rng.uniform(0, 6.3, (n, 1, dims)),
        rng.uniform(0.2, 0.9, (n, 1, dims)),
    )
    return amp * np.sin(2 * np.pi * freq * t + phase)


def test_uniform_bins_error_bound_offset_and_malformed_input():
    tok = get_registry("tokenizer").create("uniform-bins", token_offset=1000)
    assert isinstance(tok, ActionTokenizerInterface) and tok.vocab_size == 1256 and tok.error_bound == 1 / 256
    x = np.random.default_rng(0).uniform(-1, 1, (50, 8, 7))
    x[0, 0, :3] = [-1.0, 1.0, 0.0]
    tokens = tok.encode(x)
    assert all(len(t) == 56 and 1000 <= min(t) and max(t) <= 1255 for t in tokens)
    back = tok.decode(tokens, 8, 7)
    assert np.abs(back - x).max() <= tok.error_bound + 1e-12
    assert tok.decode([[*tokens[0][:5], 5, 99999]], 8, 7).shape == (1, 8, 7)  # short, out-of-range: best effort
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))).encode(x) == tokens
    assert np.abs(tok.decode(tok.encode(np.full((1, 1, 1), 3.0)), 1, 1) - 1.0).max() <= tok.error_bound  # clipped


def test_dct_is_orthonormal():
    for n in (1, 5, 16):
        d = dct_matrix(n)
        np.testing.assert_allclose(d @ d.T, np.eye(n), atol=1e-12)
    constant = np.full((16, 2), 0.5)
    coeffs = dct(constant)
    np.testing.assert_allclose(coeffs[0], 0.5 * 4.0, atol=1e-12)  # sqrt(16) * 0.5
    np.testing.assert_allclose(coeffs[1:], 0.0, atol=1e-12)
    x = np.random.default_rng(1).normal(size=(3, 10, 4))
    np.testing.assert_allclose(idct(dct(x, axis=1), axis=1), x, atol=1e-12)


def test_bpe_fast_training_matches_the_reference():
    rng = np.random.default_rng(2)
    for _ in range(4):
        seqs = [list(rng.integers(0, 5, rng.integers(1, 40))) + [0] * int(rng.integers(0, 12)) for _ in range(150)]
        assert train(seqs, 5, 90, 2) == train_reference(seqs, 5, 90, 2)
    bpe = IntBPE(5, train(seqs, 5, 90, 2))
    for seq in seqs:
        assert bpe.decode(bpe.encode(seq)) == seq


def test_fast_round_trip_within_bound_and_compresses():
    chunks = smooth_chunks(700)
    tok = get_registry("tokenizer").create("fast", scale=10.0, vocab_size=512).fit(chunks[:500])
    assert isinstance(tok, ActionTokenizerInterface) and tok.vocab_size <= 512
    tokens = tok.encode(chunks[500:])
    assert np.mean([len(t) for t in tokens]) < 0.5 * 16 * 7  # BPE compresses the frequency-major codes
    assert all(0 <= min(t) and max(t) < tok.vocab_size for t in tokens)
    back = tok.decode(tokens, 16, 7)
    err = back - chunks[500:]
    assert np.abs(err).max() <= tok.error_bound(16)  # 0.5 * sqrt(16) / scale = 0.2
    assert np.sqrt((err**2).mean(axis=(1, 2))).max() <= tok.rms_error_bound  # 0.05
    restored = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert restored.encode(chunks[500:]) == tokens
    np.testing.assert_array_equal(restored.decode(tokens, 16, 7), back)
    partial = tok.decode([tokens[0][: len(tokens[0]) // 2], [], [10**6]], 16, 7)
    assert partial.shape == (3, 16, 7) and np.all(partial[1] == 0.0)
    with pytest.raises(ValueError, match="not fitted"):
        FASTTokenizer().encode(chunks[:1])


def test_text_tokenizer_round_trips_exactly():
    texts = ["pick up the red cube", "open the drawer", "push the button", "stack the blocks"]
    tok = get_registry("tokenizer").create("text", texts=texts, vocab_size=300, max_length=12)
    for text in [*texts, "put the cube in the drawer", "Ünïcödé → робот"]:
        assert tok.decode(tok.encode([text])[0]) == text
    batch = tok(texts[:2])
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].dtype == np.int64
    assert batch["attention_mask"][0].sum() == len(tok.encode([texts[0]])[0])
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tok.pad_token_id).all()
    assert tok.batch_decode(batch["input_ids"].tolist()) == texts[:2]
    truncated = tok(["a much longer instruction than twelve tokens allow at all"], max_length=4)
    assert truncated["input_ids"].shape == (1, 4)
    again = TextTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.encode(texts) == tok.encode(texts)
