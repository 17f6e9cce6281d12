"""Prefix-LM attention masks for the transformers language models whose own mask is causal.

π0 runs the VLM prefix (images + instruction) as one bidirectional block: every real prefix token
sees every other one. A suffix run in the same pass sees the whole prefix and its own earlier
tokens, and the prefix never sees the suffix, so the prefix keys/values equal those of a
prefix-only pass and a cached prefix stays exact (``extend`` needs no mask of its own: suffix
queries over a cache see every cached key and their earlier suffix keys, which the language
model's own causal mask already gives).

OpenVLA-OFT decodes its action slots in parallel: the suffix is one bidirectional block (every
action slot sees every other one) while still never being seen by the prefix
(``suffix_attention="bidirectional"``). A causal family's own prefix can stay causal under it.

transformers uses a ready 4-D mask [B, 1, Q, K] as given: bool (True = may attend) for sdpa,
additive float (0 or the dtype's minimum) for eager.
"""

from __future__ import annotations

import torch

from librobot.core.errors import ConfigError

PREFIX_ATTENTION = ("causal", "bidirectional")
SUFFIX_ATTENTION = ("causal", "bidirectional")


def prefix_lm_allowed(
    mask: torch.Tensor, suffix_length: int = 0, *, prefix_bidirectional: bool = True, suffix_bidirectional: bool = False
) -> torch.Tensor:
    """[B, L + S] bool padding mask (prefix, then ``suffix_length`` suffix tokens) → [B, 1, T, T]
    bool, True where query row i may attend to key column j. Suffix queries always see every
    prefix key, prefix queries never see a suffix key; within each part attention is causal or
    bidirectional as asked."""
    total = mask.shape[1]
    prefix = total - suffix_length
    q = torch.arange(total, device=mask.device)[:, None]
    k = torch.arange(total, device=mask.device)[None, :]
    causal = k <= q
    # prefix keys: to every query when bidirectional, else causally (suffix queries lie after them all)
    prefix_keys = (k < prefix) & (True if prefix_bidirectional else causal)
    # suffix keys: to the suffix queries only, all of them (one block) or the later ones (causal)
    suffix_keys = (k >= prefix) & ((q >= prefix) if suffix_bidirectional else causal)
    allowed = (prefix_keys | suffix_keys)[None, None] & mask.bool()[:, None, None, :]
    # a left-padding row sees itself rather than nothing: an all-masked row is NaN in softmax
    return allowed | (k == q)[None, None]


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The bool mask as eager attention adds it to the scores: 0 where allowed, the minimum elsewhere."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def prefix_lm_mask(
    mask: torch.Tensor,
    suffix_length: int,
    dtype: torch.dtype,
    implementation: str | None,
    owner: str,
    *,
    prefix_bidirectional: bool = True,
    suffix_bidirectional: bool = False,
) -> torch.Tensor:
    """The 4-D block mask (``prefix_lm_allowed``) in the form the attention ``implementation`` takes."""
    allowed = prefix_lm_allowed(
        mask, suffix_length, prefix_bidirectional=prefix_bidirectional, suffix_bidirectional=suffix_bidirectional
    )
    if implementation in (None, "sdpa"):
        return allowed
    if implementation == "eager":
        return additive(allowed, dtype)
    raise ConfigError(
        f"{owner}: attention '{implementation}' cannot take a custom block mask, which a bidirectional prefix or "
        f"suffix needs; build the backbone with attn_implementation='sdpa' or 'eager'"
    )


def check_prefix_attention(value: str | None, supported: tuple[str, ...], owner: str) -> None:
    """A requested prefix attention must be one this backbone can run."""
    if value is None or value in supported:
        return
    if value not in PREFIX_ATTENTION:
        raise ConfigError(f"{owner}: prefix_attention={value!r} is not one of {PREFIX_ATTENTION} (or None: native)")
    raise ConfigError(
        f"{owner}: this backbone runs its prefix with {' or '.join(supported)} attention only, not {value!r}; "
        f"leave prefix_attention unset to use its own"
    )


def check_suffix_attention(value: str, owner: str) -> None:
    """``suffix_attention`` must name one of the two suffix patterns every built-in backbone runs."""
    if value not in SUFFIX_ATTENTION:
        raise ConfigError(
            f"{owner}: suffix_attention={value!r} is not one of {SUFFIX_ATTENTION}: 'causal' (each suffix token sees "
            f"the earlier ones) or 'bidirectional' (the suffix is one block, as OpenVLA-OFT's action slots)"
        )
