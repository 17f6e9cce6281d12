"""Multi-head attention over librobot.kernels: self or cross, grouped-query, RoPE, ALiBi, QK-norm,
causal / sliding-window / block-wise masks, key padding and a KV cache.

All attention math is ``librobot.kernels.attention`` / ``attention_with_prefix`` (``backend=
"kernels"``, the dispatcher that picks the fastest backend: the "flash" path) or the same ops from
``librobot.kernels.reference`` (``backend="reference"``: the plain specification, "standard").
The mask semantics are the kernels' (see ``librobot.kernels.reference.attention``).

ALiBi without an additive-bias op: the bias −m_h·(p_i − j) equals m_h·j minus a per-query
constant, and softmax ignores per-row constants, so it is exact to append one channel holding
m_h to each query and j/scale to each key (and a zero channel to the values). That holds under a
causal mask, which ALiBi is defined for, so ALiBi requires ``causal=True``; it runs in float32.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

import librobot.kernels as kernels
from librobot.core.errors import ConfigError, SpecError
from librobot.kernels import reference as kernels_reference
from librobot.models.components.normalization import RMSNorm
from librobot.models.components.positional import RotaryEmbedding, RotaryTables, alibi_slopes

KVCache = tuple[Tensor, Tensor]  # (k, v), each [B, H_kv, L, head_dim]; self-attention keys are already rotated
BACKENDS = ("kernels", "reference")


def attention_ops(backend: str):  # -> (attention, attention_with_prefix)
    if backend == "kernels":
        return kernels.attention, kernels.attention_with_prefix
    if backend == "reference":
        return kernels_reference.attention, kernels_reference.attention_with_prefix
    raise ConfigError(f"unknown attention backend '{backend}'; choose one of {', '.join(BACKENDS)}")


def _cat_masks(
    first: Tensor | None, second: Tensor | None, b: int, l1: int, l2: int, device: torch.device
) -> Tensor | None:
    if first is None and second is None:
        return None
    ones = lambda n: torch.ones(b, n, dtype=torch.bool, device=device)  # noqa: E731
    return torch.cat([first if first is not None else ones(l1), second if second is not None else ones(l2)], dim=1)


class Attention(nn.Module):
    """Multi-head attention. ``forward(x)`` for self-attention, ``forward(x, context)`` when built
    with ``cross=True``; returns [B, L, dim] (and the KV cache with ``return_kv=True``).

    Args:
        dim: width of x. num_heads: query heads. num_kv_heads: key/value heads (GQA; default
        num_heads). head_dim: default dim // num_heads. context_dim: width of the context for
        cross-attention (default dim). qk_norm: RMSNorm on queries and keys per head (stabilises
        training). causal / window: self-attention masks. rope: rotary positions (self-attention);
        alibi: linear biases (self-attention, causal). backend: "kernels" or "reference".
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        *,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        cross: bool = False,
        context_dim: int | None = None,
        qkv_bias: bool = False,
        out_bias: bool = True,
        qk_norm: bool = False,
        causal: bool = False,
        window: int | None = None,
        rope: bool = False,
        rope_theta: float = 10000.0,
        rotary_dim: int | None = None,
        alibi: bool = False,
        dropout: float = 0.0,
        backend: str = "kernels",
    ) -> None:
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else int(num_kv_heads)
        if num_heads <= 0 or num_kv_heads <= 0 or num_heads % num_kv_heads:
            raise ConfigError(f"num_heads ({num_heads}) must be a positive multiple of num_kv_heads ({num_kv_heads})")
        if head_dim is None:
            if dim % num_heads:
                raise ConfigError(f"dim ({dim}) is not divisible by num_heads ({num_heads}); pass head_dim explicitly")
            head_dim = dim // num_heads
        if cross and (causal or window is not None or rope or alibi):
            raise ConfigError(
                "causal, window, rope and alibi apply to self-attention; build cross-attention without them"
            )
        if alibi and not causal:
            raise ConfigError(
                "alibi needs causal=True (the kernels op has no additive bias; ALiBi is folded into an extra "
                "query/key channel, exact only for causal attention). Use rope=True for bidirectional attention"
            )
        if window is not None and window < 1:
            raise ConfigError(f"window must be >= 1, got {window}")
        attention_ops(backend)  # validates the name
        self.dim, self.num_heads, self.num_kv_heads, self.head_dim = (
            int(dim),
            int(num_heads),
            num_kv_heads,
            int(head_dim),
        )
        self.cross, self.causal, self.window, self.backend = bool(cross), bool(causal), window, backend
        self.scale = 1.0 / math.sqrt(self.head_dim)
        kv_in = int(context_dim or dim) if cross else self.dim
        self.q_proj = nn.Linear(self.dim, num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(kv_in, num_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(kv_in, num_kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(num_heads * self.head_dim, self.dim, bias=out_bias)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else None
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else None
        self.rotary = RotaryEmbedding(self.head_dim, theta=rope_theta, rotary_dim=rotary_dim) if rope else None
        if alibi:
            self.register_buffer("alibi_slopes", alibi_slopes(num_heads).to(torch.float32), persistent=False)
        else:
            self.alibi_slopes = None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    # ------------------------------------------------------------------------------ projections
    def _heads(self, t: Tensor, heads: int) -> Tensor:
        b, length, _ = t.shape
        return t.view(b, length, heads, self.head_dim).transpose(1, 2)

    def project_kv(
        self, source: Tensor, positions: Tensor | None = None, rotary_tables: RotaryTables | None = None
    ) -> KVCache:
        """Keys and values of ``source`` [B, L, *] (the context for cross-attention, or tokens for a
        self-attention prefix cache, rotated at ``positions``, default 0…L−1, or by their
        ``rotary_tables``)."""
        if source.dim() != 3 or source.shape[-1] != self.k_proj.in_features:
            raise SpecError(f"attention keys/values need [B, L, {self.k_proj.in_features}], got {list(source.shape)}")
        k = self._heads(self.k_proj(source), self.num_kv_heads)
        v = self._heads(self.v_proj(source), self.num_kv_heads)
        if self.k_norm is not None:
            k = self.k_norm(k)
        if self.rotary is not None:
            pos = None if rotary_tables is not None else self._positions(positions, source.shape[1], 0, source.device)
            k = self.rotary(k, pos, rotary_tables)
        return k, v

    @staticmethod
    def _positions(positions: Tensor | None, length: int, start: int, device: torch.device) -> Tensor:
        return torch.arange(start, start + length, device=device) if positions is None else positions

    # ---------------------------------------------------------------------------------- forward
    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        context_kv: KVCache | None = None,
        key_padding_mask: Tensor | None = None,
        q_blocks: Tensor | None = None,
        kv_blocks: Tensor | None = None,
        positions: Tensor | None = None,
        past_kv: KVCache | None = None,
        past_padding_mask: Tensor | None = None,
        rotary_tables: RotaryTables | None = None,
        return_kv: bool = False,
    ) -> Tensor | tuple[Tensor, KVCache]:
        """Attend from x [B, L, dim].

        Cross-attention: keys from ``context`` [B, Lc, context_dim] or precomputed ``context_kv``
        (reused, e.g., across denoising steps); ``key_padding_mask`` [B, Lc] (True = real token).
        Self-attention: ``key_padding_mask`` [B, L] covers this call's tokens, ``past_kv`` /
        ``past_padding_mask`` [B, Lp] a cached prefix the tokens follow (queries sit at positions
        Lp…Lp+L−1 unless ``positions`` [L] or [B, L] say otherwise); ``q_blocks`` [B, L] and
        ``kv_blocks`` [B, Lp+L] give block-wise (prefix-LM) visibility. ``rotary_tables``: the
        rotary tables of these positions, formed once by the caller for a whole layer stack.
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise SpecError(f"Attention(dim={self.dim}) expects x [B, L, {self.dim}], got {list(x.shape)}")
        attention, attention_with_prefix = attention_ops(self.backend)
        q = self._heads(self.q_proj(x), self.num_heads)
        if self.q_norm is not None:
            q = self.q_norm(q)
        if self.cross:
            if context_kv is None:
                if context is None:
                    raise SpecError("cross-attention needs context (or context_kv)")
                context_kv = self.project_kv(context)
            k, v = context_kv
            out = attention(q, k, v, key_padding_mask=key_padding_mask, scale=self.scale)
            kv: KVCache = context_kv
        else:
            if context is not None or context_kv is not None:
                raise SpecError("this Attention is self-attention; build it with cross=True to attend to a context")
            b, length = x.shape[:2]
            past_len = 0 if past_kv is None else past_kv[0].shape[2]
            pos = None if rotary_tables is not None else self._positions(positions, length, past_len, x.device)
            if self.rotary is not None:
                q = self.rotary(q, pos, rotary_tables)
            k, v = self.project_kv(x, pos, rotary_tables)
            if past_kv is not None:
                k_all, v_all = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)
            else:
                k_all, v_all = k, v
            kv = (k_all, v_all)
            simple_prefix = (
                past_kv is not None
                and self.window is None
                and q_blocks is None
                and key_padding_mask is None
                and self.alibi_slopes is None
            )
            if simple_prefix:  # the π0-style cached-prefix op (its own fast path in the kernels)
                out = attention_with_prefix(
                    q,
                    k,
                    v,
                    past_kv[0],
                    past_kv[1],
                    prefix_padding_mask=past_padding_mask,
                    causal=self.causal,
                    scale=self.scale,
                )
            else:
                padding = _cat_masks(past_padding_mask, key_padding_mask, b, past_len, length, x.device)
                qa, ka, va = (q, k_all, v_all) if self.alibi_slopes is None else self._alibi_augment(q, k_all, v_all)
                out = attention(
                    qa,
                    ka,
                    va,
                    causal=self.causal,
                    window=self.window,
                    q_blocks=q_blocks,
                    kv_blocks=kv_blocks,
                    key_padding_mask=padding,
                    q_offset=past_len,
                    scale=self.scale,
                )
                if self.alibi_slopes is not None:
                    out = out[..., : self.head_dim].to(q.dtype)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.num_heads * self.head_dim)
        out = self.dropout(self.o_proj(out))
        return (out, kv) if return_kv else out

    def _alibi_augment(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        assert self.alibi_slopes is not None
        b, h, lq, _ = q.shape
        hkv, lk = k.shape[1], k.shape[2]
        f = torch.float32 if q.dtype != torch.float64 else torch.float64
        slopes = self.alibi_slopes.to(device=q.device, dtype=f).view(1, h, 1, 1).expand(b, h, lq, 1)
        key_pos = (torch.arange(lk, device=q.device, dtype=f) / self.scale).view(1, 1, lk, 1).expand(b, hkv, lk, 1)
        return (
            torch.cat([q.to(f), slopes], dim=-1),
            torch.cat([k.to(f), key_pos], dim=-1),
            torch.cat([v.to(f), torch.zeros(b, hkv, lk, 1, device=q.device, dtype=f)], dim=-1),
        )

    def extra_repr(self) -> str:
        parts = [
            f"dim={self.dim}",
            f"heads={self.num_heads}",
            f"kv_heads={self.num_kv_heads}",
            f"head_dim={self.head_dim}",
        ]
        parts += (
            ["cross"] * self.cross + ["causal"] * self.causal + [f"window={self.window}"] * (self.window is not None)
        )
        parts += (
            ["rope"] * (self.rotary is not None)
            + ["alibi"] * (self.alibi_slopes is not None)
            + [f"backend={self.backend}"]
        )
        return ", ".join(parts)


class AttentionPool(nn.Module):
    """Learned query tokens cross-attending to a token sequence: [B, L, D] (+ mask) → [B, Q, D]."""

    def __init__(self, dim: int, num_heads: int = 4, num_queries: int = 1, *, backend: str = "kernels") -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.attn = Attention(dim, num_heads, cross=True, backend=backend)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        q = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        out = self.attn(q, tokens, key_padding_mask=mask)
        assert isinstance(out, Tensor)
        return out


# Registered presets: the four attention variants of the seeds, one module underneath.
def standard_attention(dim: int, num_heads: int = 8, **kwargs) -> Attention:
    """Attention computed by the kernels' plain reference op (the specification)."""
    return Attention(dim, num_heads, backend="reference", **kwargs)


def flash_attention(dim: int, num_heads: int = 8, **kwargs) -> Attention:
    """Attention through the kernels dispatcher (fastest available backend: C++/CUDA/Triton/flash)."""
    return Attention(dim, num_heads, backend="kernels", **kwargs)


def sliding_window_attention(
    dim: int, num_heads: int = 8, *, window: int = 256, causal: bool = True, **kwargs
) -> Attention:
    """Each query sees keys within ``window`` positions (causal by default, Mistral-style)."""
    return Attention(dim, num_heads, window=window, causal=causal, **kwargs)


def block_wise_attention(dim: int, num_heads: int = 8, **kwargs) -> Attention:
    """Block-wise (prefix-LM) attention: pass ``q_blocks``/``kv_blocks`` at call time; key j is
    visible to query i iff kv_blocks[j] <= q_blocks[i] (π0/Octo layouts)."""
    return Attention(dim, num_heads, **kwargs)
