"""Positions: sinusoidal (Vaswani et al.), learned, RoPE (Su et al.), ALiBi (Press et al.), and the
timestep embedding diffusion/flow heads use.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from librobot.core.errors import ConfigError, SpecError


def sinusoidal_embedding(t: Tensor, dim: int, *, max_period: float = 10000.0) -> Tensor:
    """[..., dim] embedding of (possibly fractional) positions/timesteps ``t`` [...].

    First half cosines, second half sines, at frequencies 1 … 1/max_period (geometric). An odd
    ``dim`` gets one zero column at the end.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1))
    args = t.to(torch.float32).unsqueeze(-1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class SinusoidalPositionalEmbedding(nn.Module):
    """Fixed sinusoidal table; ``forward(length)`` or ``forward(positions=...)`` → [L, dim] or [B, L, dim]."""

    def __init__(self, dim: int, max_len: int = 4096, max_period: float = 10000.0) -> None:
        super().__init__()
        self.dim, self.max_len = int(dim), int(max_len)
        table = sinusoidal_embedding(torch.arange(max_len, dtype=torch.float32), dim, max_period=max_period)
        self.register_buffer("table", table, persistent=False)

    def forward(self, length: int | None = None, *, positions: Tensor | None = None) -> Tensor:
        if positions is None:
            if length is None:
                raise SpecError("pass a length or positions")
            if length > self.max_len:
                raise SpecError(f"length {length} exceeds max_len {self.max_len}; raise max_len")
            return self.table[:length]
        return self.table[positions]  # out-of-range positions raise torch's IndexError


class LearnedPositionalEmbedding(nn.Module):
    """A learned [max_len, dim] table (initialised small, as in BERT/ViT)."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.max_len = int(max_len)
        self.weight = nn.Parameter(torch.randn(max_len, dim) * 0.02)

    def forward(self, length: int) -> Tensor:
        if length > self.max_len:
            raise SpecError(f"sequence length {length} exceeds the learned table's max_len {self.max_len}")
        return self.weight[:length]


class TimestepEmbedding(nn.Module):
    """Diffusion/flow time → vector: sinusoidal(t · scale) then a SiLU MLP (DiT's t-embedder)."""

    def __init__(self, dim: int, *, freq_dim: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        self.freq_dim, self.scale = int(freq_dim), float(scale)
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        emb = sinusoidal_embedding(t * self.scale, self.freq_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


# ------------------------------------------------------------------------------------------- RoPE
def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def rotary_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision rotations are applied in: float64 for float64 tensors, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first ``cos.shape[-1]`` channels of x [B, H, L, D] (pairs (i, i + d/2), GPT-NeoX/Llama layout).

    ``cos``/``sin`` are [L, d] or [B, L, d]; the remaining D − d channels pass unchanged (partial RoPE).
    The textbook formula, kept as the reference for ``rotate``.
    """
    d = cos.shape[-1]
    if cos.dim() == 3:  # per-sample positions: broadcast over heads
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    rot, rest = x[..., :d], x[..., d:]
    dtype = rotary_dtype(x.dtype)
    rc = rot.to(dtype)
    out = rc * cos.to(dtype) + _rotate_half(rc) * sin.to(dtype)
    return torch.cat([out.to(x.dtype), rest], dim=-1) if rest.shape[-1] else out.to(x.dtype)


class RotaryTables(NamedTuple):
    """What rotating at some positions [..., L] needs: cos, and sin with rotate-half's sign folded
    in (−sin on the first half), both [..., L, rotary_dim] in the rotation precision."""

    cos: Tensor
    sin_signed: Tensor


def rotate(x: Tensor, tables: RotaryTables) -> Tensor:
    """``apply_rotary`` in fewer ops, bitwise equal to it: rotate-half (chunk, negate, concatenate)
    becomes one ``roll`` with the sign already in the table, and dtype casts happen only when needed."""
    cos, sin = tables
    d = cos.shape[-1]
    if cos.dim() == 3:  # per-sample positions: broadcast over heads
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    rot = x if d == x.shape[-1] else x[..., :d]
    rc = rot if rot.dtype == cos.dtype else rot.to(cos.dtype)
    out = rc * cos + rc.roll(d // 2, -1) * sin
    out = out if out.dtype == x.dtype else out.to(x.dtype)
    return out if d == x.shape[-1] else torch.cat([out, x[..., d:]], dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding: rotates query/key channel pairs by position-dependent angles, so
    q(m)·k(n) depends on m − n only.

    ``rotary_dim`` < head_dim rotates only the first channels (partial rotary, as in GPT-NeoX/Phi).
    """

    def __init__(self, head_dim: int, *, theta: float = 10000.0, rotary_dim: int | None = None) -> None:
        super().__init__()
        rotary_dim = head_dim if rotary_dim is None else int(rotary_dim)
        if rotary_dim % 2 or rotary_dim > head_dim or rotary_dim <= 0:
            raise ConfigError(f"rotary_dim must be even and in (0, head_dim={head_dim}], got {rotary_dim}")
        self.head_dim, self.rotary_dim, self.theta = int(head_dim), rotary_dim, float(theta)

    def _angles(self, positions: Tensor) -> Tensor:
        """[..., L, rotary_dim / 2] angles, formed in float64 (no buffer, so ``model.half()`` cannot
        degrade them: at position 4096 a float16/float32 angle would be off by up to 0.5 / 5e-4 rad)."""
        exponent = torch.arange(0, self.rotary_dim, 2, dtype=torch.float64, device=positions.device) / self.rotary_dim
        return positions.to(torch.float64).unsqueeze(-1) * self.theta**-exponent

    def cos_sin(self, positions: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """cos, sin of shape [..., L, rotary_dim] for integer or fractional positions [..., L]."""
        angles = self._angles(positions)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def tables(self, positions: Tensor, dtype: torch.dtype = torch.float32) -> RotaryTables:
        """``rotate``'s tables for positions [..., L] (a layer stack forms them once per forward)."""
        angles = self._angles(positions)
        cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
        return RotaryTables(torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1))

    def forward(self, x: Tensor, positions: Tensor | None, tables: RotaryTables | None = None) -> Tensor:
        """Rotate x [B, H, L, head_dim] at ``positions``, or by ``tables`` already formed for them."""
        if x.shape[-1] != self.head_dim:
            raise SpecError(f"RotaryEmbedding(head_dim={self.head_dim}) got head dim {x.shape[-1]}")
        if tables is None:
            if positions is None:
                raise SpecError("RotaryEmbedding needs positions (or their tables)")
            tables = self.tables(positions, rotary_dtype(x.dtype))
        return rotate(x, tables)


# ------------------------------------------------------------------------------------------ ALiBi
def alibi_slopes(num_heads: int) -> Tensor:
    """Per-head slopes m_h: the geometric sequence 2^(-8/n · h) for n a power of two, else the
    closest power of two's slopes interleaved with the next one's (Press et al. 2022)."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if num_heads & (num_heads - 1) == 0:
        slopes = power_of_two(num_heads)
    else:
        closest = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float64)


class ALiBi(nn.Module):
    """Attention with linear biases: score_ij += −m_h · (p_i − j) for key j ≤ query position p_i.

    ``bias`` materialises the [H, Lq, Lk] bias (the reference). The ``Attention`` module applies the
    same bias without materialising it (see ``Attention``'s docstring), because librobot.kernels'
    attention op takes masks, not additive biases.
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(num_heads).to(torch.float32), persistent=False)

    def bias(self, lq: int, lk: int, *, q_offset: int | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        offset = lk - lq if q_offset is None else q_offset
        pos_q = torch.arange(lq, dtype=dtype, device=self.slopes.device)[:, None] + offset
        pos_k = torch.arange(lk, dtype=dtype, device=self.slopes.device)[None, :]
        return -self.slopes.to(dtype)[:, None, None] * (pos_q - pos_k)
