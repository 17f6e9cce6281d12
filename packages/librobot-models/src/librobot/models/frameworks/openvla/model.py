"""OpenVLA-style policy (Kim et al. 2024): the language model itself writes the actions.

Each normalised action coordinate (clipped to [-1, 1]) falls in one of ``num_bins`` (256) equal
bins; bin k *overwrites* an existing token — OpenVLA's mapping ``tokenizer.vocab_size - 1 - k``: the
last ``num_bins`` ids of the tokenizer's vocabulary, highest id for the lowest bin, skipping
special/added/image-placeholder ids, as OpenVLA does with Llama's least-used tokens. Ids come from
the tokenizer (``vocabulary.text_vocabulary_size``), never from the padding rows real checkpoints
add past it, so every action token is a token the tokenizer decodes. No token is added: the
embeddings and LM-head rows of those ids become the action tokens.

Prompt (``prompt="openvla"``): ``In: What action should the robot take to {instruction.lower()}?
\\nOut:``, inside the backbone's own layout (image tokens, BOS, its family's chat wrapper).
Training: the H·A target ids and then the stop token (the tokenizer's EOS), as OpenVLA's target
``<actions></s>``, are appended after the prompt as suffix embeddings (teacher forcing) and the LM
head is trained with cross-entropy over the *whole* vocabulary at those positions.
Inference: greedy, autoregressive, with the prompt's KV cache (``vlm.extend``), for exactly H·A
tokens (the length is known, so the stop token need not be generated); argmax over the whole
vocabulary, unconstrained as in OpenVLA, an id outside the action ids reading as the nearest
action id (OpenVLA clips); each bin decodes to its centre, so the round-trip error is ≤ 1/num_bins
per coordinate.

On a small vocabulary the overwritten ids are ordinary tokens (the built-in tiny VLM has no
tokenizer: its vocabulary is 256 bytes + 4 specials (+ ``extra_tokens``), so the bins are the byte
ids): the action and text tokens then share embeddings, which OpenVLA avoids only by having 32k
ids. RT-2-style (``rt2``) reserves new ids instead. A backbone without an LM head
(``pretrained-small``) gets a framework-owned table of the bins, and no stop token.
"""

from __future__ import annotations

import torch
from torch import Tensor

from librobot.core.errors import ConfigError
from librobot.models.action_heads.autoregressive.tokenizers import UniformBins
from librobot.models.frameworks.openvla.config import PROMPTS, OpenVLAConfig
from librobot.models.frameworks.openvla.tokens import ActionTokenVLA
from librobot.models.frameworks.openvla.vocabulary import (
    ActionVocab,
    has_vocabulary,
    protected_ids,
    stop_token_id,
    text_vocabulary_size,
)


def overwritten_ids(vlm, count: int) -> list[int]:
    """The last ``count`` tokenizer ids that no prompt needs, highest first (bin 0 → highest id)."""
    protected = protected_ids(vlm)
    ids = []
    for i in range(text_vocabulary_size(vlm) - 1, -1, -1):
        if i not in protected:
            ids.append(i)
            if len(ids) == count:
                return ids
    raise ConfigError(
        f"the backbone's vocabulary has only {len(ids)} ids free for {count} action bins; lower num_bins "
        f"or use RT-2-style, which adds reserved ids"
    )


class OpenVLAStyle(ActionTokenVLA):
    config_class = OpenVLAConfig
    registry_name = "openvla"

    def __init__(self, vlm=None, action_dim=None, state_dim=None, config=None, **options) -> None:
        super().__init__(vlm, action_dim, state_dim, config, **options)
        c: OpenVLAConfig = self.config
        self.bins = UniformBins(c.num_bins)
        vocabulary = has_vocabulary(self.vlm)
        ids = overwritten_ids(self.vlm, c.num_bins) if vocabulary else None
        # the stop token after the actions: only a language vocabulary has one
        self.stop_id = stop_token_id(self.vlm) if vocabulary else None
        self._build_tokens(ActionVocab(self.vlm, ids, c.num_bins))
        self._finish_init()

    def prompt(self, instruction: str) -> str:
        if self.config.prompt == "openvla":
            instruction = instruction.lower()
        return PROMPTS[self.config.prompt].format(instruction=instruction)

    @property
    def sequence_length(self) -> int:
        """Tokens decoded per chunk: H·A (the stop token is trained, not generated)."""
        return self.config.horizon * self.config.action_dim

    def encode_actions(self, actions: Tensor, action_is_pad: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised actions [B, H, A] → target ids [B, H·A (+1 stop token)] and loss weights."""
        ids = self.vocab.ids[self.bins.encode(actions)]
        weight = (~action_is_pad).repeat_interleave(self.config.action_dim, dim=1).to(actions.dtype)
        if self.stop_id is not None:  # every sequence ends with the stop token, always supervised
            ids = torch.cat([ids, torch.full_like(ids[:, :1], self.stop_id)], dim=1)
            weight = torch.cat([weight, torch.ones_like(weight[:, :1])], dim=1)
        return ids, weight

    def decode_tokens(self, vocab_ids: Tensor) -> Tensor:
        """Ids [B, ≥ H·A] → normalised actions [B, H, A]; a trailing stop token is ignored."""
        ids = vocab_ids[:, : self.sequence_length]
        return self.bins.decode(self.vocab.index_of(ids), self.config.horizon, self.config.action_dim)

    def discretize(self, actions: Tensor) -> Tensor:
        """Normalised actions [B, H, A] → bin indices [B, H·A] (time-major)."""
        return self.bins.encode(actions)

    def undiscretize(self, bins: Tensor) -> Tensor:
        """Bin indices [B, H·A] → bin centres [B, H, A]."""
        return self.bins.decode(bins.to(torch.long), self.config.horizon, self.config.action_dim)
