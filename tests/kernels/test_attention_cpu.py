"""The C++ CPU attention against a float64 reference on fresh random inputs: shapes (GQA, odd
lengths, head dims 8..256), every mask kind and combination, float32/float16/bfloat16, both the
AVX2 and the portable build of the kernel, strided inputs, numpy arrays. Outputs are poisoned with
NaN first, so an element the kernel forgets to write fails the comparison."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import librobot.kernels as K
from librobot.kernels import _native
from librobot.kernels import reference as R
from librobot.kernels._dispatch import get_backend

assert _native.cpu is not None, f"the cpu backend is always built, but: {_native.CPU_REASON}"

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# (B, Hq, Hkv, Lq, Lk, D): GQA groups 1/2/3/4/8, lengths around the 64-key/64-query tiles
SHAPES = [
    (2, 4, 4, 17, 17, 64),
    (1, 8, 2, 50, 131, 128),
    (2, 4, 1, 33, 70, 256),
    (1, 2, 2, 5, 9, 8),
    (3, 6, 3, 7, 130, 20),
    (1, 8, 1, 65, 65, 32),
]


def masks(b: int, lq: int, lk: int, g: torch.Generator) -> dict[str, dict]:
    qb = torch.randint(0, 3, (b, lq), generator=g)
    kb = torch.randint(0, 3, (b, lk), generator=g)
    pad = torch.rand(b, lk, generator=g) > 0.3
    pad[-1] = False  # one batch entry with every key padded: its rows must be zeros
    layout_q = torch.cat([torch.zeros(max(lq - 3, 0), dtype=torch.long), torch.arange(1, 1 + min(lq, 3))])[:lq]
    layout_k = torch.cat([torch.zeros(max(lk - 3, 0), dtype=torch.long), torch.arange(1, 1 + min(lk, 3))])[:lk]
    return {
        "none": {},
        "causal": {"causal": True},
        "causal_window": {"causal": True, "window": 5},
        "window": {"window": 3},
        "blocks_random": {"q_blocks": qb, "kv_blocks": kb},
        "blocks_prefix_lm": {"q_blocks": layout_q, "kv_blocks": layout_k},
        "padding": {"key_padding_mask": pad},
        "causal_padding_offset": {"causal": True, "key_padding_mask": pad, "q_offset": max(lk - lq - 2, 0)},
        "blocks_padding_window": {"q_blocks": qb, "kv_blocks": kb, "key_padding_mask": pad, "window": 40},
    }


def run_cpu(q, k, v, dtype_name, close, msg, **kw):
    out = torch.full(q.shape, float("nan"), dtype=q.dtype)
    got = K.attention(q, k, v, backend="cpu", out=out, **kw)
    assert got is out
    want = R.attention(q.double(), k.double(), v.double(), **kw)
    close(got, want, dtype_name, msg)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_attention_matches_float64_reference(shape, cpu_isa, seed, close):
    b, hq, hkv, lq, lk, d = shape
    g = torch.Generator().manual_seed(seed)
    for dname, dtype in DTYPES.items():
        q = torch.randn(b, hq, lq, d, generator=g).to(dtype)
        k = torch.randn(b, hkv, lk, d, generator=g).to(dtype)
        v = torch.randn(b, hkv, lk, d, generator=g).to(dtype)
        for mname, kw in masks(b, lq, lk, g).items():
            run_cpu(q, k, v, dname, close, f"seed={seed} {cpu_isa} {shape} {dname} {mname}", **kw)


def test_scale_argument_and_strided_inputs(seed, close):
    g = torch.Generator().manual_seed(seed)
    # projections laid out [B, L, H, D] and viewed as [B, H, L, D]: nothing is contiguous
    q = torch.randn(2, 40, 4, 64, generator=g).transpose(1, 2)
    kv = torch.randn(2, 90, 2, 2, 64, generator=g)
    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
    out = torch.full((2, 40, 4, 64), float("nan")).transpose(1, 2)  # a strided output too
    got = K.attention(q, k, v, causal=True, scale=0.3, backend="cpu", out=out)
    close(got, R.attention(q.double(), k.double(), v.double(), causal=True, scale=0.3), "float32", f"seed={seed}")
    half = q.half()  # strided float16: the kernel converts while packing
    got = K.attention(half, k.half(), v.half(), backend="cpu")
    close(got, R.attention(half.double(), k.half().double(), v.half().double()), "float16", f"seed={seed}")


@pytest.mark.parametrize("own", [None, 13])
def test_prefix_attention_matches_reference(own, seed, close):
    g = torch.Generator().manual_seed(seed)
    b, hq, hkv, lq, lp, d = 2, 8, 2, 50, 137, 64
    lown = lq if own is None else own
    for dname, dtype in DTYPES.items():
        q, k, v, kp, vp = (
            torch.randn(*s, generator=g).to(dtype)
            for s in ((b, hq, lq, d), (b, hkv, lown, d), (b, hkv, lown, d), (b, hkv, lp, d), (b, hkv, lp, d))
        )
        pad = torch.rand(b, lp, generator=g) > 0.2
        for kw in ({}, {"causal": True}, {"prefix_padding_mask": pad}, {"prefix_padding_mask": pad, "causal": True}):
            out = torch.full(q.shape, float("nan"), dtype=dtype)
            got = K.attention_with_prefix(q, k, v, kp, vp, backend="cpu", out=out, **kw)
            want = R.attention_with_prefix(q.double(), k.double(), v.double(), kp.double(), vp.double(), **kw)
            close(got, want, dname, f"seed={seed} {dname} {sorted(kw)}")


def test_fully_masked_tiles_are_skipped_and_their_rows_are_zero():
    cpu = get_backend("cpu")
    q = torch.randn(1, 1, 256, 32)
    K.attention(q, q, q, backend="cpu")
    assert cpu.last_tiles == 16  # 4 query tiles x 4 key tiles of 64
    K.attention(q, q, q, causal=True, backend="cpu")
    assert cpu.last_tiles == 4 + 3 + 2 + 1  # tiles above the diagonal are never computed
    # pi0 layout: 192 prefix tokens (block 0) then 64 action tokens (block 1)
    blocks = torch.tensor([0] * 192 + [1] * 64)
    K.attention(q, q, q, q_blocks=blocks, kv_blocks=blocks, backend="cpu")
    assert cpu.last_tiles == 3 * 3 + 4
    # a query block that sees no key: its rows are exactly zero, the others are not
    qb = torch.tensor([-1] * 64 + [1] * 192)
    out = K.attention(q, q, q, q_blocks=qb, kv_blocks=blocks, backend="cpu")
    assert torch.all(out[:, :, :64] == 0) and out[:, :, 64:].abs().sum() > 0
    pad = torch.zeros(1, 256, dtype=torch.bool)
    out = K.attention(q, q, q, key_padding_mask=pad, backend="cpu")
    assert cpu.last_tiles == 0 and torch.all(out == 0)


def test_numpy_arrays_without_torch_tensors(seed):
    rng = np.random.default_rng(seed)
    for dtype, tol in ((np.float32, 2e-5), (np.float16, 3e-3)):
        q = rng.standard_normal((2, 4, 30, 64)).astype(dtype)
        k = rng.standard_normal((2, 2, 75, 64)).astype(dtype)
        v = rng.standard_normal((2, 2, 75, 64)).astype(dtype)
        qb, kb = np.array([0] * 20 + [1] * 10), np.array([0] * 70 + [1] * 5)
        got = K.attention(q, k, v, q_blocks=qb, kv_blocks=kb, causal=True)
        assert isinstance(got, np.ndarray) and got.dtype == dtype and got.shape == q.shape
        t = lambda a: torch.from_numpy(a).double()  # noqa: E731
        want = R.attention(t(q), t(k), t(v), q_blocks=torch.from_numpy(qb), kv_blocks=torch.from_numpy(kb), causal=True)
        np.testing.assert_allclose(got.astype(np.float64), want.numpy(), rtol=tol, atol=tol, err_msg=f"seed={seed}")
        pad = np.ones((2, 40), dtype=bool)
        pad[0, :7] = False
        out = np.full(q.shape, np.nan, dtype=dtype)
        got = K.attention_with_prefix(
            q, k[:, :, :30], v[:, :, :30], k[:, :, 30:70], v[:, :, 30:70], prefix_padding_mask=pad, out=out
        )
        assert got is out
        want = R.attention_with_prefix(
            t(q),
            t(k[:, :, :30]),
            t(v[:, :, :30]),
            t(k[:, :, 30:70]),
            t(v[:, :, 30:70]),
            prefix_padding_mask=torch.from_numpy(pad),
        )
        np.testing.assert_allclose(got.astype(np.float64), want.numpy(), rtol=tol, atol=tol, err_msg=f"seed={seed}")


def test_thread_count_changes_nothing_but_speed(seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 8, 130, 64, generator=g) for _ in range(3))
    blocks = torch.tensor([0] * 100 + [1] * 30)
    before = K.get_cpu_threads()
    try:
        K.set_cpu_threads(1)
        assert K.get_cpu_threads() == 1
        one = K.attention(q, k, v, q_blocks=blocks, kv_blocks=blocks, backend="cpu")
        K.set_cpu_threads(2)
        two = K.attention(q, k, v, q_blocks=blocks, kv_blocks=blocks, backend="cpu")
    finally:
        K.set_cpu_threads(before)
    # each (batch, head, query tile) is computed whole by one thread: bitwise identical results
    assert torch.equal(one, two)
