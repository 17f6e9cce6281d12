"""Action tokens inside a VLM's vocabulary, shared by the OpenVLA- and RT-2-style policies.

Both write an action chunk as a sequence of vocabulary ids that the VLM's own language-model head
predicts, teacher-forced after the prompt during training and decoded greedily at inference. They
differ in which ids the actions take and how decoding is constrained (see each model's docstring);
this module holds what they share:

- ``token_embedding`` / ``has_vocabulary`` / ``protected_ids``: the backbone's input-embedding table
  and the ids a prompt needs (never reused for actions);
- ``ActionVocab``: action token k ↔ vocabulary id ``ids[k]``; input embeddings and logits come from the
  backbone's table and LM head. A backbone without a vocabulary (``pretrained-small``: encoders and a
  fusion transformer, no LM head) gets a framework-owned table and output layer over the K action
  tokens, so the policy still works on it;
- ``ActionTokenVLA``: the training loss (cross-entropy over the LM vocabulary at the action
  positions) and greedy decoding, with the prefix KV cache (``vlm.extend``) or by recomputation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from librobot.core.errors import ConfigError, SpecError
from librobot.models.frameworks.base import AbstractVLA
from librobot.models.frameworks.inputs import VLAInputs


# ---------------------------------------------------------------------------------- vocabulary
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
    """Ids usable both as input embeddings and as LM-head outputs."""
    emb = token_embedding(vlm)
    head = getattr(vlm, "lm_head", None)
    rows = getattr(head, "num_embeddings", None) or getattr(head, "out_features", None) or emb.num_embeddings
    return min(int(emb.num_embeddings), int(rows))


def protected_ids(vlm: nn.Module) -> set[int]:
    """Ids a prompt may contain besides ordinary text: specials, added tokens, image placeholders."""
    from librobot.models.vlm.tiny_vlm import BYTE_SPECIALS, TinyVLM

    if isinstance(vlm, TinyVLM):
        return set(range(256, 256 + BYTE_SPECIALS))  # <pad>, <s>, </s>, <image>
    ids: set[int] = set()
    tok = getattr(vlm, "tokenizer", None)
    if tok is not None:
        ids.update(int(i) for i in getattr(tok, "all_special_ids", []) or [])
        ids.update(int(i) for i in (getattr(tok, "added_tokens_decoder", None) or {}))
    image = getattr(getattr(getattr(vlm, "hf", None), "config", None), "image_token_id", None)
    if image is not None:
        ids.add(int(image))
    return ids


class ActionVocab(nn.Module):
    """Action token k ↔ vocabulary id ``ids[k]`` (k < K).

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


# ---------------------------------------------------------------------------------- policy base
class ActionTokenVLA(AbstractVLA):
    """Common machinery of policies whose language model writes actions as tokens.

    Sequence per sample: prompt (images + instruction) → [state token] → action tokens t_0…t_{N−1}.
    Proprioception, when ``state_dim`` > 0, is projected to one embedding placed after the prompt
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
