"""Backbone outputs of instructions alone, cached per instruction for frozen backbones.

State-based policies (no cameras) condition on the instruction only. With the backbone frozen its
output is a pure function of the instruction, so recomputing it every step is wasted work (about
a quarter of a GR00T-style training step with the tiny VLM). The cache keeps each instruction's
real tokens and re-pads them into a batch the way the backbones do (left padding, zeros there;
their positions come from the mask, so padding does not change a sample's tokens).

It is a fast path with its reference beside it: on its first batch it compares itself with the
backbone and turns itself off if they differ (a backbone with dropout in training mode, or one
whose outputs depend on the batch). It forgets everything when any backbone parameter changes
(tracked through torch's in-place version counters), or its device or dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from librobot.core.logging import get_logger

log = get_logger("models.text_cache")


class TextOnlyCache:
    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self.enabled: bool | None = None  # None: not yet checked against the backbone
        self.hits = self.misses = 0
        self._entries: dict[str, Tensor] = {}  # instruction → its real tokens [L_i, D]
        self._fingerprint: tuple[Any, ...] | None = None

    @staticmethod
    def _fingerprint_of(vlm: nn.Module) -> tuple[Any, ...]:
        return tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in vlm.parameters())

    def __call__(self, vlm: nn.Module, texts: Sequence[str]) -> Any:
        """The backbone's output for ``texts`` (no images), from the cache when it is trusted."""
        fingerprint = self._fingerprint_of(vlm)
        if fingerprint != self._fingerprint:
            self._entries.clear()
            self._fingerprint = fingerprint
        if self.enabled is False:
            return vlm(None, list(texts))
        missing = [t for t in dict.fromkeys(texts) if t not in self._entries]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            if len(self._entries) + len(missing) > self.max_entries:
                self._entries.clear()
            out = vlm(None, missing)
            for i, text in enumerate(missing):
                self._entries[text] = out.hidden_states[i][out.attention_mask[i].bool()].detach().clone()
        assembled = self._assemble(texts)
        if self.enabled is None:
            reference = vlm(None, list(texts))
            self.enabled = _same(assembled, reference)
            if not self.enabled:
                log.info("%s: per-instruction outputs differ from batched ones; caching is off", type(vlm).__name__)
                return reference
        return assembled

    def _assemble(self, texts: Sequence[str]) -> Any:
        from librobot.models.vlm.base import VLMOutput

        tokens = [self._entries[t] for t in texts]
        length = max(t.shape[0] for t in tokens)
        first = tokens[0]
        hidden = first.new_zeros(len(tokens), length, first.shape[-1])
        mask = torch.zeros(len(tokens), length, dtype=torch.bool, device=first.device)
        for i, t in enumerate(tokens):  # left padding, as the backbones lay out a prefix
            hidden[i, length - t.shape[0] :] = t
            mask[i, length - t.shape[0] :] = True
        return VLMOutput(
            hidden_states=hidden, attention_mask=mask, image_mask=torch.zeros_like(mask), num_prefix_tokens=length
        )


def _same(a: Any, b: Any) -> bool:
    if a.hidden_states.shape != b.hidden_states.shape or not torch.equal(a.attention_mask, b.attention_mask.bool()):
        return False
    return bool(torch.allclose(a.hidden_states, b.hidden_states, rtol=1e-4, atol=1e-5))
