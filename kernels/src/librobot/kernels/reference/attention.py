"""Reference attention: the specification every backend is tested against, and the fallback.

Shapes: q [B, Hq, Lq, D]; k, v [B, Hkv, Lk, D] with Hq a multiple of Hkv (grouped-query
attention: query head h reads key/value head h // (Hq // Hkv)).

Which keys a query sees is the AND of the masks given:

- query i sits at absolute position ``p_i = q_offset + i``; ``q_offset`` defaults to ``Lk - Lq``
  (the queries are the last Lq positions of the key sequence, as in cached decoding);
- ``causal``: key j is visible iff ``j <= p_i``;
- ``window=W``: key j is visible iff ``|p_i - j| < W`` (with ``causal``: ``p_i - W < j <= p_i``);
- block-wise (prefix-LM, π0/Octo layouts): ``q_blocks`` [B, Lq] or [Lq] and ``kv_blocks`` [B, Lk]
  or [Lk] integer block ids; key j is visible iff ``kv_blocks[j] <= q_blocks[i]``;
- ``key_padding_mask`` bool [B, Lk]: False keys are never visible.

A query that sees no key outputs zeros (not NaN). Softmax runs in float32 at least (float64 for
float64 inputs); the output has q's dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from librobot.core.errors import SpecError


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise SpecError(
            f"attention expects 4-D [B, H, L, D] tensors, got q{list(q.shape)} k{list(k.shape)} v{list(v.shape)}"
        )
    if k.shape != v.shape:
        raise SpecError(f"k and v must have the same shape, got {list(k.shape)} and {list(v.shape)}")
    b, hq, _, d = q.shape
    if k.shape[0] != b or k.shape[3] != d:
        raise SpecError(f"q{list(q.shape)} and k{list(k.shape)} disagree on batch size or head dim")
    if hq % k.shape[1] != 0:
        raise SpecError(f"query heads ({hq}) must be a multiple of key/value heads ({k.shape[1]})")
    if not (q.dtype == k.dtype == v.dtype):
        raise SpecError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")


def _per_batch(ids: Tensor, batch: int, length: int, name: str) -> Tensor:
    if ids.dim() == 1:
        ids = ids.unsqueeze(0).expand(batch, -1)
    if ids.shape != (batch, length):
        raise SpecError(f"{name} must have shape [{length}] or [{batch}, {length}], got {list(ids.shape)}")
    return ids


def attention_mask(
    batch: int,
    lq: int,
    lk: int,
    *,
    causal: bool = False,
    window: int | None = None,
    q_blocks: Tensor | None = None,
    kv_blocks: Tensor | None = None,
    key_padding_mask: Tensor | None = None,
    q_offset: int | None = None,
    device: torch.device | str = "cpu",
) -> Tensor | None:
    """The boolean visibility mask [B, 1, Lq, Lk] (True = visible) the options describe, or None."""
    mask: Tensor | None = None

    def combine(part: Tensor) -> None:
        nonlocal mask
        mask = part if mask is None else mask & part

    offset = lk - lq if q_offset is None else int(q_offset)
    if causal or window is not None:
        pos_q = torch.arange(lq, device=device).unsqueeze(1) + offset
        pos_k = torch.arange(lk, device=device).unsqueeze(0)
        if causal:
            combine((pos_k <= pos_q).expand(batch, 1, lq, lk))
        if window is not None:
            if window < 1:
                raise SpecError(f"window must be >= 1, got {window}")
            combine(((pos_q - pos_k).abs() < window).expand(batch, 1, lq, lk))
    if (q_blocks is None) != (kv_blocks is None):
        raise SpecError("block-wise attention needs both q_blocks and kv_blocks")
    if q_blocks is not None and kv_blocks is not None:
        qb = _per_batch(q_blocks.to(device), batch, lq, "q_blocks")
        kb = _per_batch(kv_blocks.to(device), batch, lk, "kv_blocks")
        combine((kb.unsqueeze(1) <= qb.unsqueeze(2)).unsqueeze(1))
    if key_padding_mask is not None:
        if key_padding_mask.shape != (batch, lk) or key_padding_mask.dtype != torch.bool:
            raise SpecError(
                f"key_padding_mask must be bool [{batch}, {lk}], got {key_padding_mask.dtype} {list(key_padding_mask.shape)}"
            )
        combine(key_padding_mask.to(device)[:, None, None, :].expand(batch, 1, lq, lk))
    return mask


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    window: int | None = None,
    q_blocks: Tensor | None = None,
    kv_blocks: Tensor | None = None,
    key_padding_mask: Tensor | None = None,
    q_offset: int | None = None,
    scale: float | None = None,
) -> Tensor:
    """Masked grouped-query attention, computed plainly (see the module docstring for semantics)."""
    _check_qkv(q, k, v)
    b, hq, lq, d = q.shape
    lk = k.shape[2]
    groups = hq // k.shape[1]
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    qc, kc, vc = q.to(compute), k.to(compute), v.to(compute)
    if groups > 1:
        kc = kc.repeat_interleave(groups, dim=1)
        vc = vc.repeat_interleave(groups, dim=1)
    scores = (qc @ kc.transpose(-1, -2)) * (scale if scale is not None else 1.0 / math.sqrt(d))
    mask = attention_mask(
        b,
        lq,
        lk,
        causal=causal,
        window=window,
        q_blocks=q_blocks,
        kv_blocks=kv_blocks,
        key_padding_mask=key_padding_mask,
        q_offset=q_offset,
        device=q.device,
    )
    if mask is None:
        probs = scores.softmax(dim=-1)
    else:
        scores = scores.masked_fill(~mask, float("-inf"))
        any_visible = mask.any(dim=-1, keepdim=True)
        probs = torch.where(any_visible, scores.softmax(dim=-1), torch.zeros((), dtype=compute, device=q.device))
    return (probs @ vc).to(q.dtype)


def attention_with_prefix(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    k_prefix: Tensor,
    v_prefix: Tensor,
    *,
    prefix_padding_mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """A few query tokens (an action chunk) attending to a cached prefix plus themselves.

    q, k, v [B, H, Lq, D] are the chunk's own projections; k_prefix, v_prefix [B, Hkv, Lp, D] are
    the cached prefix (e.g. a VLM's image+text tokens), fully visible except where
    ``prefix_padding_mask`` [B, Lp] is False. ``causal`` applies among the chunk's own tokens.
    Equivalent to ``attention`` over the concatenated keys with the corresponding masks.
    """
    _check_qkv(q, k, v)
    _check_qkv(q, k_prefix, v_prefix)
    b = q.shape[0]
    lp = k_prefix.shape[2]
    keys = torch.cat([k_prefix, k], dim=2)
    values = torch.cat([v_prefix, v], dim=2)
    padding = None
    if prefix_padding_mask is not None:
        # the chunk's own keys are never padded; size them by k (its length may differ from Lq)
        own = torch.ones(b, k.shape[2], dtype=torch.bool, device=q.device)
        padding = torch.cat([prefix_padding_mask.to(q.device), own], dim=1)
    return attention(q, keys, values, causal=causal, q_offset=lp, key_padding_mask=padding, scale=scale)
