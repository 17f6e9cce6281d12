"""Autoregressive action-token head: a causal transformer decoder over action tokens that
cross-attends to the conditioning (RT-2 / OpenVLA uniform bins; FAST DCT+BPE tokens).

Vocabulary: the tokenizer's ids 0…V−1, then EOS = V, BOS = V+1, PAD = V+2 (inputs only; the
output layer covers ids and EOS). Uniform bins give exactly H·A tokens per chunk (EOS is never
sampled); variable-length tokenizers end with EOS. Generation uses a KV cache (``use_cache``),
whose reference path recomputes the whole prefix at every step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from librobot.core.errors import ConfigError, SpecError
from librobot.core.interfaces import ActionTokenizerInterface
from librobot.models.action_heads.autoregressive.config import AutoregressiveConfig
from librobot.models.action_heads.autoregressive.tokenizers import (
    RegistryTokenizer,
    UniformBins,
    build_tokenizer,
    describe,
)
from librobot.models.action_heads.base import ActionHeadBase, Conditioning, edge_fill
from librobot.models.components.positional import sinusoidal_embedding
from librobot.models.components.transformer import Transformer


def sample_token(logits: Tensor, temperature: float, top_k: int, generator: torch.Generator | None) -> Tensor:
    """Greedy for temperature 0, else a draw from softmax(logits / T) over the top-k ids."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


class AutoregressiveHead(ActionHeadBase):
    config_class = AutoregressiveConfig
    config: AutoregressiveConfig

    def __init__(
        self,
        config: AutoregressiveConfig | dict | None = None,
        *,
        tokenizer: ActionTokenizerInterface | str | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(tokenizer, str):
            overrides["tokenizer"] = tokenizer
        elif tokenizer is not None:  # a fitted tokenizer object: keep what rebuilds it in the config
            name, state = describe(tokenizer)
            overrides.update(tokenizer=name, tokenizer_state=state)
        super().__init__(config, **overrides)
        c = self.config
        self.tokenizer: UniformBins | RegistryTokenizer = (
            RegistryTokenizer(tokenizer)
            if isinstance(tokenizer, ActionTokenizerInterface)
            else build_tokenizer(c.tokenizer, num_bins=c.num_bins, state=c.tokenizer_state, kwargs=c.tokenizer_kwargs)
        )
        try:
            v = self.tokenizer.vocab_size
        except (ConfigError, ValueError, RuntimeError) as exc:  # e.g. a FAST tokenizer that was never fitted
            raise ConfigError(
                f"the '{c.tokenizer}' action tokenizer is not usable yet ({exc}). The autoregressive head needs a "
                "fitted tokenizer: pass tokenizer=<fitted tokenizer> or tokenizer_state=<its to_dict()>"
            ) from exc
        self.eos, self.bos, self.pad = v, v + 1, v + 2
        self.length = c.sequence_length + (0 if self.tokenizer.fixed_length else 1)  # + EOS
        d = c.hidden_dim
        self.embed = nn.Embedding(v + 3, d)
        self.pos = nn.Parameter(
            sinusoidal_embedding(torch.arange(self.length, dtype=torch.float32), d).unsqueeze(0)
        )  # learned, sinusoidal start
        self.decoder = Transformer(
            d,
            c.depth,
            c.num_heads,
            causal=True,
            cross_attention=True,
            context_dim=c.cond_dim,
            mlp=c.mlp,
            dropout=c.dropout,
        )
        self.out = nn.Linear(d, v + 1)

    # ---------------------------------------------------------------------------- tokens
    def tokenize(self, actions: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor]:
        """Target ids [B, length] and their loss weights [B, length]."""
        if isinstance(self.tokenizer, UniformBins):
            ids = self.tokenizer.encode(actions)
            weight = (
                torch.ones_like(ids, dtype=actions.dtype)
                if valid is None
                else valid.repeat_interleave(self.action_dim, dim=1).to(actions.dtype)
            )
            return ids, weight
        # Variable-length tokens cannot be tied to steps: padded steps repeat the last real step
        # (the chunk "holds" after the episode ends), and the whole sequence is learned.
        lists = self.tokenizer.encode(edge_fill(actions, valid))
        ids = torch.full((len(lists), self.length), self.pad, dtype=torch.long)
        for i, seq in enumerate(lists):
            if len(seq) + 1 > self.length:
                raise SpecError(
                    f"a chunk encoded to {len(seq)} tokens, more than max_tokens={self.length - 1}; raise max_tokens in the config"
                )
            ids[i, : len(seq) + 1] = torch.tensor([*seq, self.eos], dtype=torch.long)
        ids = ids.to(actions.device)
        return ids, (ids != self.pad).to(actions.dtype)

    def _logits(
        self, inputs: Tensor, c: Conditioning, context_kv=None, past_kv=None, start: int = 0, return_kv: bool = False
    ):
        h = self.embed(inputs) + self.pos[:, start : start + inputs.shape[1]]
        out = self.decoder(
            h,
            context=None if context_kv is not None else c.tokens,
            context_kv=context_kv,
            context_mask=c.mask,
            past_kv=past_kv,
            return_kv=return_kv,
        )
        if return_kv:
            h, kv = out
            return self.out(h), kv
        return self.out(out)

    # -------------------------------------------------------------------------- training
    def forward(
        self,
        cond: Tensor,
        actions: Tensor,
        *,
        cond_mask: Tensor | None = None,
        action_is_pad: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        c, valid = self._prep(cond, cond_mask, actions, action_is_pad)
        ids, weight = self.tokenize(actions, valid)
        bos = torch.full((ids.shape[0], 1), self.bos, dtype=torch.long, device=ids.device)
        inputs = torch.cat([bos, ids[:, :-1]], dim=1)  # teacher forcing; positions after EOS carry PAD (no loss)
        logits = self._logits(inputs, c)
        targets = ids.masked_fill(ids == self.pad, 0)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view_as(weight)
        total = weight.sum().clamp_min(1.0)
        loss = (ce * weight).sum() / total
        accuracy = ((logits.argmax(-1) == targets).to(weight.dtype) * weight).sum() / total
        return {"loss": loss, "ce": loss.detach(), "token_accuracy": accuracy.detach()}

    # ------------------------------------------------------------------------- inference
    @torch.no_grad()
    def generate(
        self,
        cond: Tensor,
        *,
        cond_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        use_cache: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Token ids [B, length] (PAD after EOS) and the logits they were drawn from [B, length, V+1]."""
        c = self.condition(cond, cond_mask)
        temperature = self.config.temperature if temperature is None else temperature
        top_k = self.config.top_k if top_k is None else top_k
        b, dev = c.batch_size, c.tokens.device
        ids = torch.full((b, self.length), self.pad, dtype=torch.long, device=dev)
        all_logits = []
        context_kv = self.decoder.context_kv(c.tokens) if use_cache else None
        past, step_input = None, torch.full((b, 1), self.bos, dtype=torch.long, device=dev)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        for i in range(self.length):
            if use_cache:
                logits, past = self._logits(step_input, c, context_kv, past, start=i, return_kv=True)
            else:  # reference: the whole prefix again
                prefix = torch.cat([torch.full((b, 1), self.bos, dtype=torch.long, device=dev), ids[:, :i]], 1)
                logits = self._logits(prefix, c)
            logits = logits[:, -1]
            if self.tokenizer.fixed_length:
                logits = logits.clone()
                logits[:, self.eos] = float("-inf")
            all_logits.append(logits)
            token = sample_token(logits, temperature, top_k, generator)
            token = torch.where(done, torch.full_like(token, self.pad), token)
            ids[:, i] = token
            done = done | (token == self.eos)
            if bool(done.all()):
                break
            step_input = token.unsqueeze(1)
        return ids, torch.stack(all_logits, dim=1)

    @torch.no_grad()
    def predict(
        self,
        cond: Tensor,
        *,
        cond_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        use_cache: bool = True,
    ) -> Tensor:
        """Decode a chunk; greedy unless ``temperature`` > 0 (then draws come from ``generator``)."""
        if noise is not None:
            raise SpecError(
                "the autoregressive head takes no noise; its randomness is token sampling (pass generator=)"
            )
        ids, _ = self.generate(
            cond, cond_mask=cond_mask, generator=generator, temperature=temperature, top_k=top_k, use_cache=use_cache
        )
        if isinstance(self.tokenizer, UniformBins):
            return self.tokenizer.decode(ids, self.horizon, self.action_dim).to(cond.dtype)
        lists = []
        for row in ids.tolist():
            seq = []
            for t in row:
                if t >= self.eos:
                    break
                seq.append(t)
            lists.append(seq)
        return self.tokenizer.decode(lists, self.horizon, self.action_dim).to(device=cond.device, dtype=cond.dtype)


def fast_head(**kwargs: Any) -> AutoregressiveHead:
    """Autoregressive head over FAST tokens (DCT + quantisation + BPE). The tokenizer comes from the
    "tokenizer" registry (librobot-data); pass a fitted one as ``tokenizer=`` or its ``tokenizer_state``."""
    kwargs.setdefault("tokenizer", "fast")
    return AutoregressiveHead(**kwargs)
