"""Arguments of the compiled attention entry points (shared by the cpu and cuda backends):
raw addresses, shapes and element strides, with block ids as int32 and the padding mask as bytes."""

from __future__ import annotations

from typing import Any

from librobot.kernels import _arrays as A

_NO_STRIDES = (0, 0, 0, 0)
TRACING = "torch is tracing (torch.compile/export/jit): the reference runs so the graph stays exportable"


def attention_args(call: Any) -> tuple[tuple[Any, ...], Any, list[Any]]:
    """(positional args up to the threads/stream argument, output array, arrays to keep alive)."""
    q = call.q
    out = call.allocate_out()
    keep: list[Any] = []
    qb_ptr = kvb_ptr = pad_ptr = 0
    qbs = kvbs = pbs = 0
    if call.q_blocks is not None:
        qb, qbs = A.int32_ids(call.q_blocks, q, call.B, call.Lq, "q_blocks")
        kvb, kvbs = A.int32_ids(call.kv_blocks, q, call.B, call.Lk, "kv_blocks")
        keep += [qb, kvb]
        qb_ptr, kvb_ptr = A.data_ptr(qb), A.data_ptr(kvb)
    if call.key_padding is not None:
        name = "prefix_padding_mask" if call.op == "attention_with_prefix" else "key_padding_mask"
        pad = A.bool_mask(call.key_padding, q, call.B, call.pad_len, name)
        keep.append(pad)
        pad_ptr, pbs = A.data_ptr(pad), call.pad_len
    segs = []
    for k, v in call.segments:
        segs += [A.data_ptr(k), A.strides(k), A.data_ptr(v), A.strides(v), int(k.shape[2])]
    if len(call.segments) == 1:
        segs += [0, _NO_STRIDES, 0, _NO_STRIDES, 0]
    args = (
        call.code,
        call.B,
        call.Hq,
        call.Hkv,
        call.Lq,
        call.D,
        A.data_ptr(q),
        A.strides(q),
        *segs,
        A.data_ptr(out),
        A.strides(out),
        call.scale,
        call.causal,
        call.window or 0,
        call.q_offset,
        qb_ptr,
        qbs,
        kvb_ptr,
        kvbs,
        pad_ptr,
        call.pad_len if pad_ptr else 0,
        pbs,
    )
    return args, out, keep


def attention_decline(call: Any, device: str, dtypes: tuple[int, ...]) -> str | None:
    """Reasons shared by the compiled backends; None when the call suits them."""
    if call.device != device or not call.same_device:
        want = "CPU tensors or numpy arrays" if device == "cpu" else "CUDA tensors"
        return f"device {call.device}: this backend takes {want} (all on one device)"
    if call.code not in dtypes:
        names = "/".join(A.CODE_NAMES[c] for c in dtypes)
        return f"dtype {call.dtype}: the compiled kernel takes {names} (others run on the reference)"
    if call.traced:
        return TRACING
    if call.grad:
        return "inputs require grad: the compiled kernels have no backward pass (the reference runs under autograd)"
    if min(call.B, call.Hq, call.Lq, call.D) == 0:
        return "empty input (a zero-sized dimension) runs on the reference"
    if call.kind == "numpy":
        arrays = [call.q] + ([call.out] if call.out is not None else [])
        arrays += [t for seg in call.segments for t in seg]
        if not all(A.elementwise_strides_ok(t) for t in arrays):
            return "numpy strides are not a multiple of the item size"
    return None
