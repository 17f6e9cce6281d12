"""New vocabulary ids for RT-2-style action tokens (the vocabulary grows; no token is overwritten).

- Built-in tiny VLM (no tokenizer): its ``extra_tokens`` after the 256 bytes + 4 specials, grown to
  K if it has fewer.
- Transformers backbones: K tokens ``<robot_action_k>`` are added to the *tokenizer* (as special
  tokens, so no instruction text can produce them), taking ids ``len(tokenizer)``…; the embedding
  table and LM head are resized only where those ids have no rows yet. Real checkpoints pad their
  tables past the tokenizer (Qwen2-VL: 151,936 rows for 151,657 ids), so the new tokens usually land
  on padding rows — which are then real tokens the tokenizer encodes and decodes. The backbone's
  folder saves the tokenizer with them, so a reloaded policy finds them there and adds nothing.
- A policy saved before the tokens went into the tokenizer keeps its ids (``reserved_start`` past
  the tokenizer, rows that exist) so it loads and predicts as before.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from librobot.core.errors import ConfigError
from librobot.models.frameworks.openvla.vocabulary import backbone_tokenizer, token_embedding, vocabulary_size

ACTION_TOKEN = "<robot_action_{}>"


def reserve_ids(vlm: nn.Module, count: int, start: int | None) -> int:
    """Make ids [first, first + count) exist as new, unused vocabulary ids; returns ``first``."""
    from librobot.models.vlm.tiny_vlm import TinyVLM

    if isinstance(vlm, TinyVLM):
        return _tiny_extra_tokens(vlm, count, start)
    if getattr(vlm, "hf", None) is None:
        raise ConfigError(
            f"{type(vlm).__name__}: don't know how to add reserved token ids to this backbone's vocabulary"
        )
    tok = backbone_tokenizer(vlm)
    if tok is None:  # a transformers model without a tokenizer: rows past the table, as before
        first = token_embedding(vlm).num_embeddings if start is None else start
    else:
        first = _tokenizer_ids(tok, count, start)
    if vocabulary_size(vlm) < first + count:
        vlm.hf.resize_token_embeddings(first + count)
    return first


def _tokenizer_ids(tok, count: int, start: int | None) -> int:
    """First id of the K action tokens in the tokenizer, adding them when it lacks them."""
    names = [ACTION_TOKEN.format(k) for k in range(count)]
    found = [tok.convert_tokens_to_ids(n) for n in names]
    present = [i for i in found if i is not None and i != tok.unk_token_id]
    if len(present) == count:  # a reloaded policy: its tokenizer was saved with them
        first = present[0]
        if present != list(range(first, first + count)) or start not in (None, first):
            raise ConfigError(
                f"the tokenizer's action tokens {names[0]}… sit at ids {present[:3]}…, not at the policy's "
                f"reserved_start={start}; load the policy with the backbone folder it was saved with"
            )
        return first
    if present:
        raise ConfigError(
            f"the tokenizer has {len(present)} of the {count} action tokens {names[0]}…{names[-1]}, added by a "
            f"policy with another action vocabulary (num_bins/tokenizer); build this one on a fresh backbone"
        )
    if start is not None and start < len(tok):
        raise ConfigError(
            f"reserved_start={start} lies inside the tokenizer's {len(tok)} ids and would overwrite tokens; "
            f"leave reserved_start unset, it is chosen when the policy is built"
        )
    if start is not None and start > len(tok):
        return start  # saved before action tokens were added to the tokenizer: keep its rows
    first = len(tok)
    tok.add_tokens(names, special_tokens=True)
    return first


def _tiny_extra_tokens(vlm: nn.Module, count: int, start: int | None) -> int:
    from librobot.models.vlm.tiny_vlm import BYTE_SPECIALS

    first = 256 + BYTE_SPECIALS  # the tiny VLM's extra_tokens follow its bytes and specials
    if start is not None and start != first:
        raise ConfigError(f"reserved_start={start} does not match the tiny VLM's first spare id {first}")
    if vlm.cfg.extra_tokens < count:
        old = vlm.embed
        new = nn.Embedding(first + count, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
        nn.init.normal_(new.weight, std=0.02)  # the tiny VLM's own initialisation
        with torch.no_grad():
            new.weight[: old.num_embeddings] = old.weight
        new.weight.requires_grad_(old.weight.requires_grad)
        vlm.embed = new
        vlm.cfg = dataclasses.replace(vlm.cfg, extra_tokens=count)  # saved with the backbone
    return first
