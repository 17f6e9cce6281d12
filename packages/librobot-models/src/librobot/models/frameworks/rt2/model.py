"""RT-2-style policy (Brohan et al. 2023): actions are words of the VLM's own vocabulary.

How it differs from OpenVLA-style (``openvla``), which also has the LM write action tokens:
- Ids: RT-2-style *reserves new ids* for the actions — the vocabulary grows by K tokens instead of
  overwriting existing ones, so text keeps every token it had. On transformers backbones the K
  tokens are added to the tokenizer (ids ``len(tokenizer)``…, so they stay within the tokenizer's
  vocabulary and decode to ``<robot_action_k>``), on padding rows where the table has them, else on
  rows added with ``resize_token_embeddings`` (new rows start at the mean of the old ones,
  transformers' default); the built-in tiny VLM's are its ``extra_tokens`` (see ``reserved.py``).
  The first reserved id is kept in the config (``reserved_start``), so a saved policy reloads
  without growing again.
- Decoding is *constrained*: at every step only action ids (and the end token) can be chosen, so
  the output always detokenises; OpenVLA-style takes the argmax over the whole vocabulary.
- Tokenizer: uniform bins (RT-2's 256 per coordinate, H·A tokens) or FAST (DCT + BPE, from the
  "tokenizer" registry, variable length with an end-of-action token), whose tokens take the
  reserved ids in order.
Shared with OpenVLA-style: teacher-forced cross-entropy over the LM vocabulary after the prompt,
greedy autoregressive decoding with the prompt's KV cache (``vlm.extend``).

A backbone without a language-model head (``pretrained-small``) gets a framework-owned table and
output layer over the K action tokens instead of reserved rows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from librobot.core.errors import SpecError
from librobot.core.interfaces import ActionTokenizerInterface
from librobot.models.action_heads.autoregressive.tokenizers import (
    RegistryTokenizer,
    UniformBins,
    build_tokenizer,
    describe,
)
from librobot.models.action_heads.base import edge_fill
from librobot.models.frameworks.openvla.tokens import ActionTokenVLA
from librobot.models.frameworks.openvla.vocabulary import ActionVocab, has_vocabulary
from librobot.models.frameworks.rt2.config import RT2Config
from librobot.models.frameworks.rt2.reserved import reserve_ids


class RT2Style(ActionTokenVLA):
    config_class = RT2Config
    registry_name = "rt2"

    def __init__(self, vlm=None, action_dim=None, state_dim=None, config=None, **options: Any) -> None:
        tok = options.get("tokenizer")
        if isinstance(tok, ActionTokenizerInterface):  # a fitted tokenizer: keep what rebuilds it
            options["tokenizer"], options["tokenizer_state"] = describe(tok)
        super().__init__(vlm, action_dim, state_dim, config, **options)
        c: RT2Config = self.config
        self.tokenizer = (
            RegistryTokenizer(tok)
            if isinstance(tok, ActionTokenizerInterface)  # used as given: rebuilding it by name needs no trust
            else build_tokenizer(c.tokenizer, num_bins=c.num_bins, state=c.tokenizer_state, kwargs=c.tokenizer_kwargs)
        )
        self.variable_length = not self.tokenizer.fixed_length
        width = self.tokenizer.vocab_size
        count = width + self.variable_length  # + end-of-action token
        if has_vocabulary(self.vlm):
            self.start = reserve_ids(self.vlm, count, c.reserved_start)
            c.reserved_start = self.start
            ids = list(range(self.start, self.start + count))
        else:
            self.start, ids = 0, None
        eos = self.start + width if self.variable_length else None
        self._build_tokens(
            ActionVocab(self.vlm, ids, count), allowed_ids=list(range(self.start, self.start + count)), eos_id=eos
        )
        self._finish_init()

    @property
    def sequence_length(self) -> int:
        c = self.config
        if not self.variable_length:
            return c.horizon * c.action_dim
        return (c.max_tokens or c.horizon * c.action_dim) + 1

    # ------------------------------------------------------------------ tokens
    def encode_actions(self, actions: Tensor, action_is_pad: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised actions [B, H, A] → reserved vocabulary ids [B, N] and loss weights [B, N]."""
        if isinstance(self.tokenizer, UniformBins):
            ids = self.start + self.tokenizer.encode(actions)
            return ids, (~action_is_pad).repeat_interleave(self.config.action_dim, dim=1).to(actions.dtype)
        # variable length: padded steps hold the last real step; the end token closes the sequence
        lists = self.tokenizer.encode(edge_fill(actions, (~action_is_pad).float()))
        n = self.sequence_length
        ids = torch.full((len(lists), n), self.eos_id, dtype=torch.long)
        weight = torch.zeros(len(lists), n, dtype=actions.dtype)
        for i, seq in enumerate(lists):
            if len(seq) >= n:
                raise SpecError(f"a chunk encoded to {len(seq)} tokens, more than max_tokens={n - 1}; raise max_tokens")
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long) + self.start
            weight[i, : len(seq) + 1] = 1.0
        return ids.to(actions.device), weight.to(actions.device)

    def decode_tokens(self, vocab_ids: Tensor) -> Tensor:
        """Reserved vocabulary ids [B, N] → normalised actions [B, H, A] (detokenisation)."""
        c = self.config
        if isinstance(self.tokenizer, UniformBins):
            return self.tokenizer.decode(vocab_ids - self.start, c.horizon, c.action_dim)
        lists = []
        for row in vocab_ids.tolist():
            seq = []
            for t in row:
                if t == self.eos_id:
                    break
                seq.append(t - self.start)
            lists.append(seq)
        return self.tokenizer.decode(lists, c.horizon, c.action_dim).to(self.device)
