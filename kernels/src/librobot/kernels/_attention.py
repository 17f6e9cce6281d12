"""Public attention ops: validate once, describe the call, let the dispatcher pick a backend.

Semantics are those of ``librobot.kernels.reference.attention`` (the specification); these
functions add ``backend=`` (force one backend) and ``out=`` (write into a preallocated array).
They accept torch tensors or, for the compiled CPU backend, numpy arrays.
"""

from __future__ import annotations

import math
from typing import Any

from librobot.core.errors import SpecError
from librobot.kernels import _arrays as A
from librobot.kernels._dispatch import select


def _check_qkv(q: Any, k: Any, v: Any, names: str = "q, k, v") -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise SpecError(
            f"attention expects 4-D [B, H, L, D] tensors, got q{list(q.shape)} k{list(k.shape)} v{list(v.shape)}"
        )
    if tuple(k.shape) != tuple(v.shape):
        raise SpecError(f"k and v must have the same shape, got {list(k.shape)} and {list(v.shape)}")
    b, hq, _, d = q.shape
    if k.shape[0] != b or k.shape[3] != d:
        raise SpecError(f"q{list(q.shape)} and k{list(k.shape)} disagree on batch size or head dim")
    if k.shape[1] == 0 or hq % k.shape[1] != 0:
        raise SpecError(f"query heads ({hq}) must be a multiple of key/value heads ({k.shape[1]})")
    if not (q.dtype == k.dtype == v.dtype):
        raise SpecError(f"{names} dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")


class AttentionCall:
    """Everything a backend needs to decide and to run one attention call."""

    key = None  # attention decisions are not cached: they depend on shapes and masks

    def __init__(
        self,
        op: str,
        q: Any,
        segments: list[tuple[Any, Any]],
        *,
        causal: bool,
        window: int | None,
        q_blocks: Any,
        kv_blocks: Any,
        key_padding: Any,
        pad_len: int,
        q_offset: int | None,
        scale: float | None,
        out: Any,
        raw: dict[str, Any],
    ) -> None:
        self.op, self.q, self.segments, self.raw, self.out = op, q, segments, raw, out
        self.kind = A.kind(q, "q")
        arrays = [q] + [t for seg in segments for t in seg] + ([out] if out is not None else [])
        tq = type(q)
        for t in arrays:
            if type(t) is not tq and A.kind(t, "attention inputs") != self.kind:
                raise SpecError("attention inputs mix torch tensors and numpy arrays; pass one kind")
        self.B, self.Hq, self.Lq, self.D = (int(s) for s in q.shape)
        self.Hkv = int(segments[0][0].shape[1])
        self.seg_len = [int(seg[0].shape[2]) for seg in segments]
        self.Lk = sum(self.seg_len)
        if self.kind == "numpy":
            self.device, self.same_device, self.grad, self.traced = "cpu", True, False, False
        else:
            self.traced = A.tracing(q)
            cpu = q.is_cpu
            self.device = "cpu" if cpu else q.device.type
            self.same_device = all(t.is_cpu for t in arrays) if cpu else all(t.device == q.device for t in arrays)
            self.grad = A.requires_grad(*arrays)
        self.code = A.dtype_code(q)
        self.causal = bool(causal)
        if window is not None and int(window) < 1:
            raise SpecError(f"window must be >= 1, got {window}")
        self.window = None if window is None else int(window)
        if (q_blocks is None) != (kv_blocks is None):
            raise SpecError("block-wise attention needs both q_blocks and kv_blocks")
        self.q_blocks, self.kv_blocks = q_blocks, kv_blocks
        self.key_padding, self.pad_len = key_padding, pad_len
        self.q_offset = self.Lk - self.Lq if q_offset is None else int(q_offset)
        self.scale = float(scale) if scale is not None else 1.0 / math.sqrt(self.D) if self.D else 1.0
        if out is not None:
            shape = (self.B, self.Hq, self.Lq, self.D)
            if tuple(out.shape) != shape or out.dtype != q.dtype or A.device_type(out) != self.device:
                raise SpecError(
                    f"out must be a {self.dtype} {self.device} array of shape {list(shape)}, got {out.dtype} "
                    f"{A.device_type(out)} {list(out.shape)}"
                )

    @property
    def dtype(self) -> str:
        return A.dtype_name(self.q)

    @property
    def masks(self) -> list[str]:
        names = []
        if self.causal:
            names.append("causal")
        if self.window is not None:
            names.append("window")
        if self.q_blocks is not None:
            names.append("blocks")
        if self.key_padding is not None:
            names.append("padding")
        return names

    def describe(self) -> str:
        lens = "+".join(str(n) for n in self.seg_len)
        return (
            f"{self.kind} {self.dtype} on {self.device}, B={self.B} Hq={self.Hq} Hkv={self.Hkv} "
            f"Lq={self.Lq} Lk={lens} D={self.D}, masks: {', '.join(self.masks) or 'none'}"
        )

    def allocate_out(self) -> Any:
        if self.out is not None:
            return self.out
        return A.empty((self.B, self.Hq, self.Lq, self.D), self.q)


def attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    causal: bool = False,
    window: int | None = None,
    q_blocks: Any = None,
    kv_blocks: Any = None,
    key_padding_mask: Any = None,
    q_offset: int | None = None,
    scale: float | None = None,
    backend: str | None = None,
    out: Any = None,
) -> Any:
    """Masked grouped-query attention over [B, H, L, D] (see ``reference.attention`` for the semantics)."""
    A.kind(q, "q")
    _check_qkv(q, k, v)
    raw = dict(
        causal=causal,
        window=window,
        q_blocks=q_blocks,
        kv_blocks=kv_blocks,
        key_padding_mask=key_padding_mask,
        q_offset=q_offset,
        scale=scale,
    )
    pad_len = int(k.shape[2]) if key_padding_mask is not None else 0
    call = AttentionCall(
        "attention",
        q,
        [(k, v)],
        causal=causal,
        window=window,
        q_blocks=q_blocks,
        kv_blocks=kv_blocks,
        key_padding=key_padding_mask,
        pad_len=pad_len,
        q_offset=q_offset,
        scale=scale,
        out=out,
        raw=raw,
    )
    return select("attention", "attention", call, backend).attention(call)


def attention_with_prefix(
    q: Any,
    k: Any,
    v: Any,
    k_prefix: Any,
    v_prefix: Any,
    *,
    prefix_padding_mask: Any = None,
    causal: bool = False,
    scale: float | None = None,
    backend: str | None = None,
    out: Any = None,
) -> Any:
    """An action chunk's queries over a cached prefix KV plus the chunk's own keys (no concatenation)."""
    A.kind(q, "q")
    _check_qkv(q, k, v)
    _check_qkv(q, k_prefix, v_prefix, "q, k_prefix, v_prefix")
    if k_prefix.shape[1] != k.shape[1]:
        raise SpecError(f"k_prefix has {k_prefix.shape[1]} heads but k has {k.shape[1]}; they must match")
    raw = dict(prefix_padding_mask=prefix_padding_mask, causal=causal, scale=scale)
    lp = int(k_prefix.shape[2])
    call = AttentionCall(
        "attention_with_prefix",
        q,
        [(k_prefix, v_prefix), (k, v)],
        causal=causal,
        window=None,
        q_blocks=None,
        kv_blocks=None,
        key_padding=prefix_padding_mask,
        pad_len=lp if prefix_padding_mask is not None else 0,
        q_offset=lp,
        scale=scale,
        out=out,
        raw=raw,
    )
    return select("attention_with_prefix", "attention", call, backend).attention(call)
