"""Action tokens inside a VLM's vocabulary, shared by the OpenVLA- and RT-2-style policies.

Both write an action chunk as a sequence of vocabulary ids that the VLM's own language-model head
predicts, teacher-forced after the prompt during training and decoded greedily at inference. They
differ in the prompt, how decoding is constrained (see each model's docstring) and which ids the
actions take — always ids of the backbone's *tokenizer*, never the padding rows real checkpoints
add past it (``vocabulary.py``):

- OpenVLA-style: the last K ids of the tokenizer's vocabulary, bin k → ``tokenizer.vocab_size - 1
  - k`` skipping special/added/image ids (OpenVLA's mapping, which overwrites the least-used tokens);
- RT-2-style: K new tokens added to the tokenizer (ids ``len(tokenizer)``…), on padding rows where
  the table has them, else on new rows (``rt2/reserved.py``);
- without a tokenizer: the built-in tiny VLM's byte vocabulary (+ ``extra_tokens``), or, without an
  LM head (``pretrained-small``), a framework-owned table (``ActionVocab(ids=None)``).

This module holds ``ActionTokenVLA``: the prompt hook, the training loss (cross-entropy over the LM
vocabulary at the action positions) and greedy decoding, with the prefix KV cache (``vlm.extend``)
or by recomputation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from librobot.core.errors import SpecError
from librobot.models.frameworks.base import AbstractVLA
from librobot.models.frameworks.inputs import VLAInputs
from librobot.models.frameworks.openvla.vocabulary import ActionVocab


# ---------------------------------------------------------------------------------- policy base
class ActionTokenVLA(AbstractVLA):
    """Common machinery of policies whose language model writes actions as tokens.

    Sequence per sample: prompt (images + ``prompt(instruction)``) → [state token] → action tokens
    t_0…t_{N−1}. The backbone lays the prompt text out as its family does (image tokens, BOS, chat
    wrapper); ``prompt`` is what text it gets for an instruction (the instruction itself unless a
    subclass says otherwise), applied in ``prepare`` so training, inference and export see the same
    prompt. Proprioception, when ``state_dim`` > 0, is projected to one embedding placed after the prompt
    (OpenVLA and RT-2 themselves take none; OpenVLA-OFT adds it the same way). Subclasses call
    ``_build_tokens`` with an ``ActionVocab`` and, optionally, ``allowed_ids`` (constrained decoding)
    and ``eos_id`` (variable-length sequences), and implement ``encode_actions``/``decode_tokens``.

    The language model *is* the action decoder here: with the backbone frozen (``freeze_vlm``,
    ``freeze_backbone()``) only the state projection (and a framework-owned token table) trains, so
    ``freeze_vlm`` defaults to False; to save memory freeze parts instead (``policy.vlm.freeze("vision")``).
    """

    vocab: ActionVocab

    def _build_tokens(
        self, vocab: ActionVocab, *, allowed_ids: list[int] | None = None, eos_id: int | None = None
    ) -> None:
        """Subclasses call this once: the vocabulary mapping, decoding constraints, state token."""
        self.vocab = vocab
        allowed = None if allowed_ids is None else torch.tensor(allowed_ids, dtype=torch.long)
        self.register_buffer("allowed_ids", allowed, persistent=False)
        self.eos_id = eos_id
        dim = self.vlm.get_embedding_dim()
        s = self.config.state_dim
        self.state_proj = nn.Sequential(nn.Linear(s, dim), nn.GELU(), nn.Linear(dim, dim)) if s else None

    def backbone_probe(self, vlm: nn.Module, image: Tensor) -> list[Tensor]:
        # the language model's logits are the action decoder: the LM head is read
        hidden = vlm(image, ["a"]).hidden_states
        vocab = self.__dict__.get("_modules", {}).get("vocab")
        return [vocab.logits(vlm, hidden) if vocab is not None else vlm.compute_logits(hidden)]

    # ------------------------------------------------------------------ subclass hooks
    def prompt(self, instruction: str) -> str:
        """The text the backbone is given for one instruction."""
        return instruction

    def prepare(
        self,
        images: Any,
        text: Any = None,
        proprioception: Tensor | None = None,
        actions: Tensor | None = None,
        action_is_pad: Tensor | None = None,
    ) -> VLAInputs:
        inputs = super().prepare(images, text, proprioception, actions, action_is_pad)
        inputs.text = [self.prompt(t) for t in inputs.text]
        return inputs

    def encode_actions(self, actions: Tensor, action_is_pad: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised actions [B, H, A] → target vocabulary ids [B, N] and loss weights [B, N]."""
        raise NotImplementedError

    def decode_tokens(self, vocab_ids: Tensor) -> Tensor:
        """Generated vocabulary ids [B, N] → normalised actions [B, H, A]."""
        raise NotImplementedError

    @property
    def sequence_length(self) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------------ sequences
    def _suffix(self, inputs: VLAInputs, vocab_ids: Tensor | None) -> Tensor | None:
        parts = []
        if self.state_proj is not None:
            parts.append(self.state_proj(inputs.current_state).unsqueeze(1))
        if vocab_ids is not None and vocab_ids.shape[1] > 0:
            parts.append(self.vocab.embed_ids(self.vlm, vocab_ids))
        return torch.cat(parts, dim=1) if parts else None

    def compute_loss(self, inputs: VLAInputs) -> dict[str, Tensor]:
        targets, weight = self.encode_actions(inputs.actions, inputs.action_is_pad)
        n = targets.shape[1]
        out = self.vlm(inputs.current_views, inputs.text, suffix_embeds=self._suffix(inputs, targets[:, :-1]))
        # hidden state of the position just before each action token predicts it (teacher forcing)
        first = out.num_prefix_tokens + (self.state_proj is not None)
        logits = self.vocab.logits(self.vlm, out.hidden_states[:, first - 1 : first - 1 + n])
        ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view_as(weight)
        total = weight.sum().clamp_min(1.0)
        loss = (ce * weight).sum() / total
        accuracy = ((logits.argmax(-1) == targets).to(weight.dtype) * weight).sum() / total
        return {"loss": loss, "ce": loss.detach(), "token_accuracy": accuracy.detach()}

    def _choose(self, logits: Tensor) -> Tensor:
        """Greedy choice; with ``allowed_ids`` only action ids can win (constrained decoding)."""
        if self.allowed_ids is not None:
            logits = logits[..., self.allowed_ids]
            return self.allowed_ids[logits.argmax(-1)]
        return logits.argmax(-1)

    @torch.no_grad()
    def generate_ids(self, inputs: VLAInputs, *, use_cache: bool | None = None) -> tuple[Tensor, Tensor]:
        """Greedy decoding: vocabulary ids [B, N] and the raw (unconstrained) logits [B, N, V]
        they were chosen from. ``use_cache`` (default ``config.use_kv_cache``): the prompt runs
        once with ``return_kv=True`` and every step runs only the newest token over the cache,
        which then grows by it; otherwise every step recomputes the whole sequence (the reference)."""
        use_cache = self.config.use_kv_cache if use_cache is None else use_cache
        b, n = inputs.batch_size, self.sequence_length
        ids = torch.zeros(b, 0, dtype=torch.long, device=self.device)
        done = torch.zeros(b, dtype=torch.bool, device=self.device)
        raw = []
        if use_cache:  # ``out.prefix_kv`` is always the cache of everything run so far
            out = self.vlm(inputs.current_views, inputs.text, return_kv=True)
            state = self._suffix(inputs, None)  # the proprioception token, when there is one
            if state is not None:
                out = self.vlm.extend(out.prefix_kv, state, return_kv=True)
        for step in range(n):
            if not use_cache:
                out = self.vlm(inputs.current_views, inputs.text, suffix_embeds=self._suffix(inputs, ids))
            elif step > 0:
                out = self.vlm.extend(out.prefix_kv, self.vocab.embed_ids(self.vlm, ids[:, -1:]), return_kv=True)
            logits = self.vocab.logits(self.vlm, out.hidden_states[:, -1]).float()
            raw.append(logits)
            token = self._choose(logits)
            if self.eos_id is not None:  # rows that ended keep emitting end-of-sequence
                token = torch.where(done, torch.full_like(token, self.eos_id), token)
                done = done | (token == self.eos_id)
            ids = torch.cat([ids, token[:, None]], dim=1)
            if self.eos_id is not None and bool(done.all()):
                break
        return ids, torch.stack(raw, dim=1)

    def sample_actions(self, inputs: VLAInputs, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        if noise is not None:
            raise SpecError(f"{type(self).__name__} decodes tokens greedily and takes no noise")
        ids, _ = self.generate_ids(inputs)
        return self.decode_tokens(ids).to(self.device)

    # ------------------------------------------------------------------ public helpers
    def generate(
        self, images: Any, text: Any = None, proprioception: Tensor | None = None, *, use_cache: bool | None = None
    ) -> Tensor:
        """The vocabulary ids ``predict_action`` decodes [B, N] (for inspection and tests)."""
        was_training = self.training
        self.eval()
        try:
            return self.generate_ids(self.prepare(images, text, proprioception), use_cache=use_cache)[0]
        finally:
            self.train(was_training)
