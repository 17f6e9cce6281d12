"""OpenVLA-style policy (Kim et al. 2024): the language model itself writes the actions.

Each normalised action coordinate (clipped to [-1, 1]) falls in one of ``num_bins`` (256) equal
bins; bin k *overwrites* an existing vocabulary id — the last ``num_bins`` ids of the backbone's
vocabulary, skipping special/added/image-placeholder ids, highest id for the lowest bin, as OpenVLA
does with Llama's least-used tokens. No token is added: the embeddings and LM-head rows of those
ids become the action tokens.

Training: the H·A target ids are appended after the prompt as suffix embeddings (teacher forcing)
and the LM head is trained with cross-entropy over the *whole* vocabulary at those positions.
Inference: greedy, autoregressive, with the prompt's KV cache (``vlm.extend``); argmax over the
whole vocabulary, unconstrained as in OpenVLA, an id outside the action ids reading as the nearest
action id (OpenVLA clips); each bin decodes to its centre, so the round-trip error is ≤ 1/num_bins
per coordinate.

On a small vocabulary the overwritten ids are ordinary tokens (the built-in tiny VLM's vocabulary
is 256 bytes + 4 specials, so the bins are the byte ids): the action and text tokens then share
embeddings, which OpenVLA avoids only by having 32k ids. RT-2-style (``rt2``) reserves new ids instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from librobot.core.errors import ConfigError
from librobot.models.action_heads.autoregressive.tokenizers import UniformBins
from librobot.models.frameworks.openvla.config import OpenVLAConfig
from librobot.models.frameworks.openvla.tokens import (
    ActionTokenVLA,
    ActionVocab,
    has_vocabulary,
    protected_ids,
    vocabulary_size,
)


def overwritten_ids(vlm, count: int) -> list[int]:
    """The last ``count`` vocabulary ids that no prompt needs, highest first (bin 0 → highest id)."""
    protected = protected_ids(vlm)
    ids = []
    for i in range(vocabulary_size(vlm) - 1, -1, -1):
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
        ids = overwritten_ids(self.vlm, c.num_bins) if has_vocabulary(self.vlm) else None
        self._build_tokens(ActionVocab(self.vlm, ids, c.num_bins))
        self._finish_init()

    @property
    def sequence_length(self) -> int:
        return self.config.horizon * self.config.action_dim

    def encode_actions(self, actions: Tensor, action_is_pad: Tensor) -> tuple[Tensor, Tensor]:
        ids = self.vocab.ids[self.bins.encode(actions)]
        weight = (~action_is_pad).repeat_interleave(self.config.action_dim, dim=1).to(actions.dtype)
        return ids, weight

    def decode_tokens(self, vocab_ids: Tensor) -> Tensor:
        return self.bins.decode(self.vocab.index_of(vocab_ids), self.config.horizon, self.config.action_dim)

    def discretize(self, actions: Tensor) -> Tensor:
        """Normalised actions [B, H, A] → bin indices [B, H·A] (time-major)."""
        return self.bins.encode(actions)

    def undiscretize(self, bins: Tensor) -> Tensor:
        """Bin indices [B, H·A] → bin centres [B, H, A]."""
        return self.bins.decode(bins.to(torch.long), self.config.horizon, self.config.action_dim)
