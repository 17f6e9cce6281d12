"""The Triton backend: compiled for CUDA tensors (x86 GPU hosts), or run by Triton's interpreter on
CPU tensors when TRITON_INTERPRET=1 was set before the kernels were imported (tests only: slow,
and the interpreter computes bfloat16 tl.dot wrongly, so bfloat16 attention is declined there)."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from typing import Any

from librobot.core.extras import is_available
from librobot.kernels import _arrays as A
from librobot.kernels._dispatch import Backend
from librobot.kernels.backends._native_args import TRACING

MAX_HEAD_DIM = 256
_ATTN_DTYPES = (A.F32, A.F16, A.BF16)
_STEP_DTYPES = (A.F32, A.F16, A.BF16)
_STEP_BLOCK = 1024


def interpreting() -> bool:
    """Whether our kernels are (or, once imported, will be) run by the interpreter."""
    mod = sys.modules.get("librobot.kernels.triton_kernels")
    if mod is not None:
        return bool(mod.INTERPRET)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


class TritonBackend(Backend):
    name = "triton"

    def __init__(self) -> None:
        self._available = is_available("triton")
        self._error: str | None = None
        self._attn: Any = None
        self._samp: Any = None

    def unavailable(self) -> str | None:
        if not self._available:
            return "triton is not installed (x86 GPU hosts: pip install triton)"
        return self._error

    def _load(self) -> str | None:
        """Import the kernels on first need; a failure becomes this backend's decline reason."""
        if self._attn is None and self._error is None:
            try:
                from librobot.kernels.triton_kernels import attention, sampling
            except Exception as exc:  # a broken triton install must not break dispatch
                self._error = f"triton kernels failed to import: {type(exc).__name__}: {exc}"
            else:
                self._attn, self._samp = attention, sampling
        return self._error

    def _kernels(self) -> tuple[Any, Any]:
        return self._attn, self._samp

    def declines(self, op: str, call: Any) -> str | None:
        if call.kind != "torch":
            return "numpy arrays: this backend takes torch tensors"
        interp = interpreting()
        want = "cpu" if interp else "cuda"
        if call.device != want:
            if interp:
                return f"device {call.device}: TRITON_INTERPRET=1 is set, so only CPU tensors run (in the interpreter)"
            return f"device {call.device}: needs CUDA tensors (CPU tensors only under TRITON_INTERPRET=1, for tests)"
        if call.traced:
            return TRACING
        if call.grad:
            return "inputs require grad: the Triton kernels have no backward pass (the reference runs under autograd)"
        if op.startswith("attention"):
            if not call.same_device:
                return "inputs are on different devices"
            if call.code not in _ATTN_DTYPES:
                return f"dtype {call.dtype}: Triton attention takes float32/float16/bfloat16"
            if interp and call.code == A.BF16:
                return "bfloat16 under TRITON_INTERPRET: the interpreter computes bf16 tl.dot wrongly"
            if call.D > MAX_HEAD_DIM or min(call.B, call.Hq, call.Lq, call.D) == 0:
                return f"head dim {call.D} outside 1..{MAX_HEAD_DIM} or an empty input"
            return self._load()
        if call.code not in _STEP_DTYPES:
            return f"dtype {call.dtype}: Triton steps take float32/float16/bfloat16 (float64 runs on cuda/reference)"
        if not call.uniform:
            return "inputs differ in shape/dtype/device or are not contiguous (they run on the reference)"
        return self._load()

    @staticmethod
    def _guard(x: Any) -> Any:
        import torch

        if x.device.type == "cuda" and x.device.index is not None and x.device.index != torch.cuda.current_device():
            return torch.cuda.device(x.device)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ attention
    def attention(self, call: Any) -> Any:
        attn, _ = self._kernels()
        q, out = call.q, call.allocate_out()
        keep = []
        qb = kvb = pad = q
        qbs = kvbs = pbs = 0
        if call.q_blocks is not None:
            qb, qbs = A.int32_ids(call.q_blocks, q, call.B, call.Lq, "q_blocks")
            kvb, kvbs = A.int32_ids(call.kv_blocks, q, call.B, call.Lk, "kv_blocks")
        if call.key_padding is not None:
            name = "prefix_padding_mask" if call.op == "attention_with_prefix" else "key_padding_mask"
            pad = A.bool_mask(call.key_padding, q, call.B, call.pad_len, name).view(dtype=_torch().uint8)
            pbs = call.pad_len
        keep += [qb, kvb, pad]
        (k0, v0), (k1, v1) = call.segments[0], call.segments[-1]
        two = len(call.segments) == 2
        args = dict(Q=q, K0=k0, V0=v0, K1=k1, V1=v1, Out=out, QB=qb, KVB=kvb, PAD=pad)
        for name, t in (("q", q), ("k0", k0), ("v0", v0), ("k1", k1), ("v1", v1), ("o", out)):
            for axis, stride in zip(("b", "h", "m" if name in ("q", "o") else "n", "d"), t.stride()):
                args[f"s{name}_{axis}"] = stride
        args.update(
            qb_bstride=qbs,
            kvb_bstride=kvbs,
            pad_bstride=pbs,
            Hq=call.Hq,
            G=call.Hq // call.Hkv,
            Lq=call.Lq,
            L0=call.seg_len[0],
            L1=call.seg_len[1] if two else 0,
            D=call.D,
            q_offset=call.q_offset,
            window=call.window or 0,
            pad_len=call.pad_len,
            qk_scale=call.scale * 1.4426950408889634,
            CAUSAL=call.causal,
            HAS_WINDOW=call.window is not None,
            HAS_BLOCKS=call.q_blocks is not None,
            HAS_PAD=call.key_padding is not None,
            TWO_SEGS=two,
            IEEE=call.code == A.F32,
        )
        block_d = max(16, 1 << (call.D - 1).bit_length())
        if interpreting():
            block_m, block_n, warps, stages = 16, 16, 1, 1
        else:
            block_m = 64
            block_n = 64 if block_d <= 128 else 32
            warps, stages = (4, 2) if block_d <= 64 else (8, 2)
        grid = (call.B * call.Hq, math.ceil(call.Lq / block_m))
        with self._guard(q):
            attn.launch(args, grid, block_m, block_n, block_d, warps, stages)
        return out

    # ------------------------------------------------------------------ sampling
    def _grid(self, n: int) -> tuple[int]:
        return (max(1, math.ceil(n / _STEP_BLOCK)),)

    def diffusion(self, call: Any, coef: Any) -> Any:
        _, samp = self._kernels()
        x, eps, noise = call.inputs
        out = call.out()
        with self._guard(x):
            samp.diffusion_kernel[self._grid(call.n)](
                x,
                eps,
                noise if noise is not None else x,
                out,
                call.n,
                coef.ax,
                coef.ae,
                coef.clip,
                coef.sqrt_acp,
                coef.inv_sqrt_1m_acp,
                coef.k_x0,
                coef.k_xt,
                coef.k_eps,
                coef.k_noise,
                CLIP=coef.has_clip,
                NOISE=noise is not None,
                BLOCK=_STEP_BLOCK,
            )
        return out

    def euler(self, call: Any, dt: float) -> Any:
        _, samp = self._kernels()
        x, v = call.inputs
        out = call.out()
        with self._guard(x):
            samp.euler_kernel[self._grid(call.n)](x, v, out, call.n, dt, BLOCK=_STEP_BLOCK)
        return out

    def heun(self, call: Any, dt: float) -> Any:
        _, samp = self._kernels()
        x, v, vn = call.inputs
        out = call.out()
        with self._guard(x):
            samp.heun_kernel[self._grid(call.n)](x, v, vn, out, call.n, 0.5 * dt, BLOCK=_STEP_BLOCK)
        return out

    def edm_euler(self, call: Any, sigma_hat: float, sigma_next: float) -> Any:
        _, samp = self._kernels()
        x, den = call.inputs
        ox, os_ = call.out(0), call.out(1)
        with self._guard(x):
            samp.edm_euler_kernel[self._grid(call.n)](
                x, den, ox, os_, call.n, 1.0 / sigma_hat, sigma_next - sigma_hat, BLOCK=_STEP_BLOCK
            )
        return ox, os_

    def edm_heun(self, call: Any, sigma_hat: float, sigma_next: float) -> Any:
        _, samp = self._kernels()
        xh, s, dn, xn = call.inputs
        out = call.out()
        with self._guard(xh):
            samp.edm_heun_kernel[self._grid(call.n)](
                xh, s, dn, xn, out, call.n, 1.0 / sigma_next, 0.5 * (sigma_next - sigma_hat), BLOCK=_STEP_BLOCK
            )
        return out


def _torch() -> Any:
    import torch

    return torch
