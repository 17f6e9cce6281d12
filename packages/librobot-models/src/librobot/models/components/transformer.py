"""Pre-norm transformer blocks: self-attention, optional cross-attention to a context, a
feed-forward, and optional adaLN-Zero conditioning (DiT, Peebles & Xie 2023) on a vector or
per-token signal (e.g. a diffusion timestep + observation embedding).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from librobot.core.errors import SpecError
from librobot.models.components.attention import Attention, KVCache
from librobot.models.components.conditioning import AdaLNModulation, modulate
from librobot.models.components.mlp import FeedForward
from librobot.models.components.normalization import build_norm
from librobot.models.components.positional import RotaryTables, rotary_dtype


class TransformerBlock(nn.Module):
    """x → x + SA(norm x) [→ x + CA(norm x, context)] → x + FF(norm x).

    With ``cond_dim`` each sub-layer's norm is modulated by shift/scale and its output gated, all
    predicted from ``cond`` [B, cond_dim] (or [B, L, cond_dim] per token) and zero-initialised, so
    the block starts as the identity. Attention options are ``Attention``'s.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        mlp: str = "gelu",
        mlp_ratio: float = 4.0,
        norm: str = "layernorm",
        norm_eps: float | None = None,
        cross_attention: bool = False,
        context_dim: int | None = None,
        cond_dim: int | None = None,
        causal: bool = False,
        window: int | None = None,
        rope: bool = False,
        rope_theta: float = 10000.0,
        alibi: bool = False,
        qk_norm: bool = False,
        qkv_bias: bool = False,
        dropout: float = 0.0,
        backend: str = "kernels",
    ) -> None:
        super().__init__()
        self.dim, self.cond_dim = int(dim), cond_dim
        affine = cond_dim is None  # adaLN supplies the scale/shift
        attn_kw = dict(
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            qk_norm=qk_norm,
            qkv_bias=qkv_bias,
            dropout=dropout,
            backend=backend,
        )
        self.norm1 = build_norm(norm, dim, eps=norm_eps, affine=affine)
        self.self_attn = Attention(
            dim, num_heads, causal=causal, window=window, rope=rope, rope_theta=rope_theta, alibi=alibi, **attn_kw
        )
        self.cross_attn: Attention | None = None
        if cross_attention:
            self.norm_cross = build_norm(norm, dim, eps=norm_eps, affine=affine)
            self.cross_attn = Attention(dim, num_heads, cross=True, context_dim=context_dim or dim, **attn_kw)
        self.norm2 = build_norm(norm, dim, eps=norm_eps, affine=affine)
        self.ff = FeedForward(dim, kind=mlp, mult=mlp_ratio, dropout=dropout)
        n_sub = 3 if cross_attention else 2
        self.modulation = AdaLNModulation(cond_dim, dim, 3 * n_sub) if cond_dim is not None else None

    def forward(
        self,
        x: Tensor,
        *,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        context_kv: KVCache | None = None,
        cond: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        q_blocks: Tensor | None = None,
        kv_blocks: Tensor | None = None,
        positions: Tensor | None = None,
        past_kv: KVCache | None = None,
        past_padding_mask: Tensor | None = None,
        rotary_tables: RotaryTables | None = None,
        return_kv: bool = False,
    ) -> Tensor | tuple[Tensor, KVCache]:
        """x [B, L, dim] → [B, L, dim] (and this layer's self-attention KV cache with ``return_kv``)."""
        if self.modulation is not None:
            if cond is None:
                raise SpecError("this block was built with cond_dim; pass cond [B, cond_dim] or [B, L, cond_dim]")
            mods = self.modulation(cond)
        elif cond is not None:
            raise SpecError("cond given to a block built without cond_dim; build it with cond_dim=...")
        else:
            mods = None

        def pre(norm: nn.Module, i: int) -> Tensor:
            h = norm(x)
            return h if mods is None else modulate(h, mods[3 * i], mods[3 * i + 1])

        def gate(h: Tensor, i: int) -> Tensor:
            if mods is None:
                return h
            g = mods[3 * i + 2]
            return h * (g.unsqueeze(1) if g.dim() == 2 else g)

        attn = self.self_attn(
            pre(self.norm1, 0),
            key_padding_mask=key_padding_mask,
            q_blocks=q_blocks,
            kv_blocks=kv_blocks,
            positions=positions,
            past_kv=past_kv,
            past_padding_mask=past_padding_mask,
            rotary_tables=rotary_tables,
            return_kv=True,
        )
        h, kv = attn  # type: ignore[misc]
        x = x + gate(h, 0)
        sub = 1
        if self.cross_attn is not None:
            if context is None and context_kv is None:
                raise SpecError("this block has cross-attention; pass context [B, Lc, context_dim] (or context_kv)")
            x = x + gate(
                self.cross_attn(pre(self.norm_cross, 1), context, context_kv=context_kv, key_padding_mask=context_mask),
                1,
            )  # type: ignore[arg-type]
            sub = 2
        elif context is not None or context_kv is not None:
            raise SpecError("context given to a block built without cross_attention=True")
        x = x + gate(self.ff(pre(self.norm2, sub)), sub)
        return (x, kv) if return_kv else x


class Transformer(nn.Module):
    """A stack of ``TransformerBlock``s (same keyword options) with an optional final norm.

    ``past_kv``/``context_kv`` are per-layer lists; ``return_kv=True`` returns (x, [layer KV caches]).
    """

    def __init__(self, dim: int, depth: int, num_heads: int, *, final_norm: bool = True, **block_kwargs) -> None:
        super().__init__()
        self.dim, self.depth = int(dim), int(depth)
        self.layers = nn.ModuleList(TransformerBlock(dim, num_heads, **block_kwargs) for _ in range(depth))
        norm = block_kwargs.get("norm", "layernorm")
        self.norm = build_norm(norm, dim, eps=block_kwargs.get("norm_eps")) if final_norm else nn.Identity()

    def context_kv(self, context: Tensor) -> list[KVCache]:
        """Every layer's cross-attention keys/values for ``context``: compute once, reuse many times."""
        out = []
        for layer in self.layers:
            if layer.cross_attn is None:
                raise SpecError("context_kv needs blocks built with cross_attention=True")
            out.append(layer.cross_attn.project_kv(context))
        return out

    def forward(
        self,
        x: Tensor,
        *,
        context_kv: Sequence[KVCache] | None = None,
        past_kv: Sequence[KVCache] | None = None,
        return_kv: bool = False,
        **kwargs,
    ) -> Tensor | tuple[Tensor, list[KVCache]]:
        rotary = self.layers[0].self_attn.rotary if len(self.layers) else None
        if rotary is not None and kwargs.get("rotary_tables") is None:
            # every layer rotates at the same positions: form the angles once, not twice per layer
            start = 0 if past_kv is None else past_kv[0][0].shape[2]
            positions = Attention._positions(kwargs.get("positions"), x.shape[1], start, x.device)
            kwargs["rotary_tables"] = rotary.tables(positions, rotary_dtype(x.dtype))
        caches: list[KVCache] = []
        for i, layer in enumerate(self.layers):
            out = layer(
                x,
                context_kv=None if context_kv is None else context_kv[i],
                past_kv=None if past_kv is None else past_kv[i],
                return_kv=return_kv,
                **kwargs,
            )
            if return_kv:
                x, kv = out
                caches.append(kv)
            else:
                x = out
        x = self.norm(x)
        return (x, caches) if return_kv else x
