"""Which vocabulary ids action tokens may take, shared by the OpenVLA- and RT-2-style policies.

Three sizes matter, and real checkpoints make them differ:

- the embedding table's rows (``vocabulary_size``: min of input-embedding and LM-head rows);
- the tokenizer's ids: ``tokenizer.vocab_size`` (its base vocabulary) and ``len(tokenizer)`` (with
  added tokens). Tables are padded past the tokenizer for matmul-friendly shapes (Qwen2-VL: 151,936
  rows for 151,657 tokenizer ids); those padding rows are never produced nor decoded by the
  tokenizer, so an action written there is no token at all.

Action ids therefore come from the tokenizer's ids (``text_vocabulary_size``), never from padding
rows. A backbone without a tokenizer keeps its own rules: the built-in tiny VLM's ids are its byte
vocabulary (+ ``extra_tokens``), and a backbone without an LM head (``pretrained-small``) gets a
framework-owned table (``ActionVocab`` with ``ids=None``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from librobot.core.errors import ConfigError


def token_embedding(vlm: nn.Module) -> nn.Embedding | None:
    """The backbone's input-embedding table (the one its prompt tokens go through), if it has one."""
    hf = getattr(vlm, "hf", None)
    if hf is not None and callable(getattr(hf, "get_input_embeddings", None)):
        emb = hf.get_input_embeddings()
        return emb if isinstance(emb, nn.Embedding) else None
    emb = getattr(vlm, "embed", None)
    return emb if isinstance(emb, nn.Embedding) else None


def has_vocabulary(vlm: nn.Module) -> bool:
    """True when the backbone has both a token table and a language-model head over it."""
    return token_embedding(vlm) is not None and getattr(vlm, "lm_head", None) is not None


def vocabulary_size(vlm: nn.Module) -> int:
    """Rows usable both as input embeddings and as LM-head outputs (padding rows included)."""
    emb = token_embedding(vlm)
    head = getattr(vlm, "lm_head", None)
    rows = getattr(head, "num_embeddings", None) or getattr(head, "out_features", None) or emb.num_embeddings
    return min(int(emb.num_embeddings), int(rows))


def backbone_tokenizer(vlm: nn.Module) -> Any | None:
    """The backbone's text tokenizer (transformers backbones); None for the byte-level tiny VLM."""
    from librobot.models.vlm.tiny_vlm import TinyVLM

    return None if isinstance(vlm, TinyVLM) else getattr(vlm, "tokenizer", None)


def text_vocabulary_size(vlm: nn.Module) -> int:
    """Ids of the tokenizer's base vocabulary (``tokenizer.vocab_size``, OpenVLA's bound) that also
    have embedding and LM-head rows; without a tokenizer, every row."""
    rows = vocabulary_size(vlm)
    size = getattr(backbone_tokenizer(vlm), "vocab_size", None)
    return rows if size is None else min(rows, int(size))


def protected_ids(vlm: nn.Module) -> set[int]:
    """Ids a prompt may contain besides ordinary text: specials, added tokens, image placeholders."""
    from librobot.models.vlm.tiny_vlm import BYTE_SPECIALS, TinyVLM

    if isinstance(vlm, TinyVLM):
        return set(range(256, 256 + BYTE_SPECIALS))  # <pad>, <s>, </s>, <image>
    ids: set[int] = set()
    tok = backbone_tokenizer(vlm)
    if tok is not None:
        ids.update(int(i) for i in getattr(tok, "all_special_ids", []) or [])
        ids.update(int(i) for i in (getattr(tok, "added_tokens_decoder", None) or {}))
    image = getattr(getattr(getattr(vlm, "hf", None), "config", None), "image_token_id", None)
    if image is not None:
        ids.add(int(image))
    return ids


def stop_token_id(vlm: nn.Module) -> int:
    """The id that ends a generated answer: the tokenizer's EOS (the tiny VLM's ``</s>``)."""
    from librobot.models.vlm.tiny_vlm import EOS, TinyVLM

    if isinstance(vlm, TinyVLM):
        return EOS
    eos = getattr(backbone_tokenizer(vlm), "eos_token_id", None)
    if eos is None:
        raise ConfigError(
            f"{type(vlm).__name__}: the backbone's tokenizer has no eos_token, which ends OpenVLA's action "
            f"sequence; give the tokenizer one (tokenizer.eos_token = ...) before building the policy"
        )
    return int(eos)


class ActionVocab(nn.Module):
    """Action token k ↔ vocabulary id ``ids[k]`` (k < K).

    Input embeddings and logits come from the backbone's table and LM head; with ``ids=None`` (a
    backbone without a vocabulary) the K action tokens get a framework-owned table and output layer.
    The backbone is passed to each method rather than stored, so its weights are registered once
    (under the framework's ``vlm``) and never saved twice.
    """

    def __init__(self, vlm: nn.Module, ids: list[int] | None, num_tokens: int) -> None:
        super().__init__()
        self.num_tokens = int(num_tokens)
        self.own = ids is None
        if self.own:  # no vocabulary: the K action tokens are the whole vocabulary
            dim = vlm.get_embedding_dim()
            self.embed = nn.Embedding(num_tokens, dim)
            nn.init.normal_(self.embed.weight, std=0.02)
            self.head = nn.Linear(dim, num_tokens)
            ids = list(range(num_tokens))
        if len(ids) != num_tokens or len(set(ids)) != num_tokens:
            raise ConfigError(f"need {num_tokens} distinct action-token ids, got {len(set(ids))}")
        self.register_buffer("ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        self.register_buffer("sorted_ids", torch.tensor(sorted(ids), dtype=torch.long), persistent=False)
        self.register_buffer(
            "order", torch.tensor(sorted(range(num_tokens), key=ids.__getitem__), dtype=torch.long), persistent=False
        )

    def embed_ids(self, vlm: nn.Module, vocab_ids: Tensor) -> Tensor:
        """Input embeddings [B, S, D] of vocabulary ids [B, S] (as the prompt's tokens get theirs)."""
        table = self.embed if self.own else token_embedding(vlm)
        return table(vocab_ids)

    def logits(self, vlm: nn.Module, hidden: Tensor) -> Tensor:
        """Next-token logits over the whole vocabulary [..., V] from hidden states [..., D]."""
        return self.head(hidden) if self.own else vlm.compute_logits(hidden)

    def index_of(self, vocab_ids: Tensor) -> Tensor:
        """Action index k of each id; an id that is no action token maps to the nearest one by id
        (OpenVLA's clipping of out-of-range ids, generalised to non-contiguous id sets)."""
        # searchsorted (side='left') as a count of smaller ids: the same index, and ONNX has no searchsorted
        pos = (self.sorted_ids < vocab_ids.unsqueeze(-1)).sum(-1).clamp(max=self.num_tokens - 1)
        below = (pos - 1).clamp(min=0)
        closer_below = (vocab_ids - self.sorted_ids[below]).abs() < (self.sorted_ids[pos] - vocab_ids).abs()
        return self.order[torch.where(closer_below, below, pos)]
