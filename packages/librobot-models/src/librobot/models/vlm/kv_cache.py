"""The prefix key/value cache every VLM backbone exposes, in one form.

A π0-style action expert runs many denoising steps per observation; the VLM prefix (images +
instruction) does not change between them, so the backbone runs once with ``return_kv=True`` and
the expert attends to the cached keys/values at every step.

Form (shared by the transformers wrappers, the built-in tiny VLM and the pretrained-small backbone):

- ``keys[i]``, ``values[i]``: layer ``i``'s tensors, shape ``[B, H_kv, L, D_head]``. Keys are stored
  *after* the backbone's positional encoding (RoPE/M-RoPE rotated; learned/sinusoidal positions are
  added to the hidden states before the projection, so nothing more is needed).
- ``attention_mask``: ``[B, L]`` bool, True for real tokens (prefixes are left-padded).
- ``next_position``: ``[B]`` long, the position a token appended after the prefix takes (already
  offset for 1-indexed or M-RoPE schemes), so an expert using the same RoPE continues the sequence.
- ``layout``: layer count, query/kv heads, head size, width and the positional scheme.

``attend_to_prefix`` is the reference attention of suffix queries over [prefix; suffix] keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from librobot.core.errors import SpecError


@dataclass(frozen=True)
class KVLayout:
    """What a consumer needs to know to attend to a backbone's prefix cache."""

    num_layers: int
    num_heads: int  # query heads of the backbone's language layers
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    position_scheme: str  # "rope", "mrope", "learned", "sinusoidal"
    rope_theta: float | None = None
    prefix_attention: str = "causal"  # how prefix tokens saw each other: "causal" or "bidirectional"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PrefixKV:
    """Per-layer keys/values of a VLM prefix; see the module docstring for the exact form."""

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    attention_mask: torch.Tensor
    next_position: torch.Tensor
    layout: KVLayout

    def __post_init__(self) -> None:
        if len(self.keys) != len(self.values) or len(self.keys) != self.layout.num_layers:
            raise SpecError(
                f"PrefixKV: {len(self.keys)} key and {len(self.values)} value tensors for a backbone with "
                f"{self.layout.num_layers} layers; pass one (k, v) pair per layer"
            )
        b, length = self.attention_mask.shape
        for i, (k, v) in enumerate(zip(self.keys, self.values)):
            expected = (b, self.layout.num_kv_heads, length, self.layout.head_dim)
            if tuple(k.shape) != expected or tuple(v.shape) != expected:
                raise SpecError(
                    f"PrefixKV layer {i}: keys {tuple(k.shape)} / values {tuple(v.shape)}, expected {expected} "
                    f"([B, H_kv, L, D_head])"
                )

    # ------------------------------------------------------------------ shape
    def __len__(self) -> int:
        return len(self.keys)

    @property
    def batch_size(self) -> int:
        return int(self.attention_mask.shape[0])

    @property
    def length(self) -> int:
        return int(self.attention_mask.shape[1])

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys[index], self.values[index]

    # ------------------------------------------------------------------ copies
    def _map(self, fn, *, batch_fn=None) -> PrefixKV:
        """A new PrefixKV with ``fn`` applied to keys/values and ``batch_fn`` to the per-sample fields."""
        batch_fn = batch_fn or (lambda t: t)
        return replace(
            self,
            keys=tuple(fn(k) for k in self.keys),
            values=tuple(fn(v) for v in self.values),
            attention_mask=batch_fn(self.attention_mask),
            next_position=batch_fn(self.next_position),
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> PrefixKV:
        return self._map(lambda t: t.to(device=device, dtype=dtype), batch_fn=lambda t: t.to(device))

    def detach(self) -> PrefixKV:
        return self._map(torch.Tensor.detach)

    def repeat_interleave(self, repeats: int) -> PrefixKV:
        """Each sample ``repeats`` times in a row (e.g. several action samples per observation)."""
        rep = lambda t: t.repeat_interleave(repeats, dim=0)  # noqa: E731
        return self._map(rep, batch_fn=rep)

    def appended(
        self, keys: tuple[torch.Tensor, ...], values: tuple[torch.Tensor, ...], suffix_mask: torch.Tensor
    ) -> PrefixKV:
        """This cache grown by S suffix tokens: ``keys``/``values`` are the whole [prefix; suffix]
        per layer [B, H_kv, L + S, D]. Later suffixes see the grown tokens as prefix (visible to
        every query), which is what greedy decoding one token at a time needs."""
        s = int(suffix_mask.shape[1])
        return PrefixKV(
            keys=tuple(keys),
            values=tuple(values),
            attention_mask=torch.cat([self.attention_mask.to(suffix_mask.device), suffix_mask.bool()], dim=1),
            next_position=self.next_position + s,
            layout=self.layout,
        )

    def to_legacy(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """``((k0, v0), (k1, v1), ...)``, the tuple form older code expects."""
        return tuple(zip(self.keys, self.values))

    def to_dynamic_cache(self, config: Any = None) -> Any:
        """A fresh transformers ``DynamicCache`` holding these tensors (ours are never mutated)."""
        from transformers import DynamicCache

        cache = DynamicCache(config=config) if config is not None else DynamicCache()
        for i, (k, v) in enumerate(zip(self.keys, self.values)):
            cache.update(k, v, i)
        return cache


def kv_from_cache(cache: Any, num_layers: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Keys and values per layer out of a transformers cache (``DynamicCache`` or compatible)."""
    layers = getattr(cache, "layers", None)
    if layers is None or len(layers) < num_layers:
        raise SpecError(
            f"the backbone returned a cache with {0 if layers is None else len(layers)} layers, expected {num_layers}"
        )
    keys = tuple(layers[i].keys for i in range(num_layers))
    values = tuple(layers[i].values for i in range(num_layers))
    return keys, values


def attend_to_prefix(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    prefix: PrefixKV | tuple[torch.Tensor, torch.Tensor],
    layer: int = 0,
    *,
    prefix_mask: torch.Tensor | None = None,
    suffix_mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Suffix queries attend to [prefix keys; suffix keys]: the π0 action-expert pattern.

    ``q`` [B, H, S, D]; ``k``/``v`` [B, H_kv, S, D] (the suffix's own, already position-encoded);
    ``prefix`` a ``PrefixKV`` (layer ``layer`` is used) or a ``(k, v)`` pair [B, H_kv, L, D] with
    ``prefix_mask`` [B, L]. ``causal`` makes suffix tokens see only earlier suffix tokens; otherwise
    the suffix block is bidirectional; ``suffix_mask`` [B, S] hides padded suffix keys. Grouped-query
    heads are fine (H a multiple of H_kv). Runs on ``librobot.kernels`` (cached-prefix attention, or
    masked attention when the suffix is padded). Returns [B, H, S, D].
    """
    import librobot.kernels as kernels

    if isinstance(prefix, PrefixKV):
        pk, pv = prefix.layer(layer)
        prefix_mask = prefix.attention_mask if prefix_mask is None else prefix_mask
    else:
        pk, pv = prefix
    pk, pv = pk.to(k.dtype), pv.to(v.dtype)
    if q.shape[1] % pk.shape[1]:
        raise SpecError(f"{q.shape[1]} query heads cannot share {pk.shape[1]} key/value heads (must divide evenly)")
    pad = None if prefix_mask is None else prefix_mask.to(q.device).bool()
    if suffix_mask is None:
        return kernels.attention_with_prefix(q, k, v, pk, pv, prefix_padding_mask=pad, causal=causal, scale=scale)
    b, length = pk.shape[0], pk.shape[2]
    if pad is None:
        pad = torch.ones(b, length, dtype=torch.bool, device=q.device)
    return kernels.attention(
        q,
        torch.cat([pk, k], dim=2),
        torch.cat([pv, v], dim=2),
        causal=causal,
        q_offset=length,
        key_padding_mask=torch.cat([pad, suffix_mask.to(q.device).bool()], dim=1),
        scale=scale,
    )


def left_padded_positions(mask: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Positions that count only real tokens: ``start`` for the first real token of each row."""
    positions = mask.long().cumsum(-1) - 1 + start
    return positions.masked_fill(~mask.bool(), start)
