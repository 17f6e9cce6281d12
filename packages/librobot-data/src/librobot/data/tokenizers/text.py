"""A thin wrapper over a Hugging Face ``tokenizers.Tokenizer`` for task instructions.

Batches come out padded to a common length as numpy (or torch) ``input_ids`` / ``attention_mask``.
``TextTokenizer.train`` builds a byte-level BPE tokenizer from a dataset's task strings, which is
lossless: ``decode(encode(text)) == text`` for every text that is not truncated (round-trip error
0, checked by the tests). Wrap a model's own ``tokenizer.json`` with ``from_file``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core.errors import ConfigError
from librobot.core.extras import require

EXTRA = "librobot-data[text]"
FORMAT = "librobot-text-tokenizer"
PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def _tokenizers() -> Any:
    return require("tokenizers", extra=EXTRA, purpose="tokenizing task instructions")


class TextTokenizer:
    def __init__(self, tokenizer: Any, *, max_length: int = 64, pad_token: str = PAD) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.pad_token = pad_token
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ConfigError(
                f"the tokenizer has no pad token {pad_token!r}; pass pad_token= one of its special tokens"
            )
        self.pad_token_id = int(pad_id)

    @classmethod
    def train(
        cls, texts: Iterable[str], *, vocab_size: int = 512, min_frequency: int = 1, max_length: int = 64
    ) -> TextTokenizer:
        """Byte-level BPE trained on ``texts`` (lossless on any text)."""
        tk = _tokenizers()
        tokenizer = tk.Tokenizer(tk.models.BPE())
        tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[PAD, BOS, EOS],
            initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(list(texts), trainer=trainer)
        return cls(tokenizer, max_length=max_length)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> TextTokenizer:
        """A ``tokenizer.json`` file, or a folder holding one (nothing is downloaded)."""
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise ConfigError(f"{file} does not exist")
        return cls(_tokenizers().Tokenizer.from_file(str(file)), **kwargs)

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids if int(i) != self.pad_token_id], skip_special_tokens=True)

    def batch_decode(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def __call__(
        self, texts: str | Sequence[str], *, max_length: int | None = None, return_tensors: str = "np"
    ) -> dict[str, Any]:
        """``input_ids`` and ``attention_mask`` [B, L] int64, right-padded, truncated to max_length."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        limit = max_length or self.max_length
        encoded = [ids[:limit] for ids in self.encode(texts)]
        length = max((len(ids) for ids in encoded), default=0) or 1
        input_ids = np.full((len(texts), length), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.int64)
        for i, ids in enumerate(encoded):
            input_ids[i, : len(ids)] = ids
            mask[i, : len(ids)] = 1
        if return_tensors == "pt":
            import torch

            return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        return {"input_ids": input_ids, "attention_mask": mask}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "tokenizer": self.tokenizer.to_str(),
            "max_length": self.max_length,
            "pad_token": self.pad_token,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> TextTokenizer:
        if state.get("format") != FORMAT:
            raise ConfigError(f"not a text tokenizer state: format {state.get('format')!r}")
        tokenizer = _tokenizers().Tokenizer.from_str(state["tokenizer"])
        return cls(tokenizer, max_length=state.get("max_length", 64), pad_token=state.get("pad_token", PAD))
