"""Flash-style masked attention in Triton: one program per (batch*head, tile of BLOCK_M queries),
online softmax in float32 over key tiles, tl.dot for both products. Key ranges outside the
causal/window band are never visited, and tiles whose block ids or padding hide every key from
the whole query tile are skipped before K and V are loaded."""

from __future__ import annotations

import triton
import triton.language as tl

NEG_INT = -(2**31)
POS_INT = 2**31 - 1


@triton.jit
def _segment(
    acc,
    m_i,
    l_i,
    q,
    K,
    V,
    sk_n,
    sk_d,
    sv_n,
    sv_d,
    seg_start,
    seg_len,
    lo,
    hi,
    offs_m,
    offs_d,
    Lq,
    D,
    q_offset,
    window,
    qk_scale,
    qb_rows,
    qb_max,
    KVB,
    PAD,
    pad_len,
    CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    HAS_BLOCKS: tl.constexpr,
    HAS_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr,
    IEEE: tl.constexpr,
):
    first = (tl.maximum(lo - seg_start, 0) // BLOCK_N) * BLOCK_N
    end = tl.minimum(hi - seg_start, seg_len)
    pos_q = q_offset + offs_m
    for n0 in range(first, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        j = seg_start + offs_n
        in_seg = offs_n < seg_len
        run = n0 >= 0
        if HAS_BLOCKS:
            kvb = tl.load(KVB + j, mask=in_seg, other=POS_INT)
            run = run & (tl.min(kvb, 0) <= qb_max)
        if HAS_PAD:
            pv = tl.load(PAD + j, mask=in_seg & (j < pad_len), other=1).to(tl.int32)
            pv = tl.where(in_seg, pv, 0)
            run = run & (tl.max(pv, 0) > 0)
        if run:
            kmask = in_seg[:, None] & (offs_d[None, :] < D)
            k = tl.load(K + offs_n[:, None] * sk_n + offs_d[None, :] * sk_d, mask=kmask, other=0.0)
            if IEEE:
                s = tl.dot(q, tl.trans(k), input_precision="ieee")
            else:
                s = tl.dot(q, tl.trans(k))
            vis = in_seg[None, :] & (offs_m < Lq)[:, None]
            if CAUSAL:
                vis = vis & (j[None, :] <= pos_q[:, None])
            if HAS_WINDOW:
                dist = pos_q[:, None] - j[None, :]
                vis = vis & (dist < window) & (dist > -window)
            if HAS_BLOCKS:
                vis = vis & (kvb[None, :] <= qb_rows[:, None])
            if HAS_PAD:
                vis = vis & (pv[None, :] != 0)
            s = tl.where(vis, s * qk_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # nothing visible yet: weights stay 0
            p = tl.exp2(s - ref[:, None])
            alpha = tl.exp2(m_i - ref)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(V + offs_n[:, None] * sv_n + offs_d[None, :] * sv_d, mask=kmask, other=0.0)
            if IEEE:
                pv_dot = tl.dot(p.to(v.dtype), v, input_precision="ieee")
            else:
                pv_dot = tl.dot(p.to(v.dtype), v)
            acc = acc * alpha[:, None] + pv_dot
            m_i = m_new
    return acc, m_i, l_i


@triton.jit
def attention_kernel(
    Q,
    K0,
    V0,
    K1,
    V1,
    Out,
    QB,
    KVB,
    PAD,
    sq_b,
    sq_h,
    sq_m,
    sq_d,
    sk0_b,
    sk0_h,
    sk0_n,
    sk0_d,
    sv0_b,
    sv0_h,
    sv0_n,
    sv0_d,
    sk1_b,
    sk1_h,
    sk1_n,
    sk1_d,
    sv1_b,
    sv1_h,
    sv1_n,
    sv1_d,
    so_b,
    so_h,
    so_m,
    so_d,
    qb_bstride,
    kvb_bstride,
    pad_bstride,
    Hq,
    G,
    Lq,
    L0,
    L1,
    D,
    q_offset,
    window,
    pad_len,
    qk_scale,
    CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    HAS_BLOCKS: tl.constexpr,
    HAS_PAD: tl.constexpr,
    TWO_SEGS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    IEEE: tl.constexpr,
):
    pid_bh = tl.program_id(0).to(tl.int64)
    pid_m = tl.program_id(1)
    b = pid_bh // Hq
    h = pid_bh % Hq
    kvh = h // G
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < Lq
    q = tl.load(
        Q + b * sq_b + h * sq_h + offs_m[:, None] * sq_m + offs_d[None, :] * sq_d,
        mask=row_ok[:, None] & (offs_d[None, :] < D),
        other=0.0,
    )

    # keys that the causal/window band can show to this query tile
    p0 = q_offset + pid_m * BLOCK_M
    p1 = q_offset + tl.minimum(pid_m * BLOCK_M + BLOCK_M, Lq) - 1
    lo = p0 * 0
    hi = p0 * 0 + L0 + L1
    if CAUSAL:
        hi = tl.minimum(hi, p1 + 1)
    if HAS_WINDOW:
        lo = tl.maximum(lo, p0 - window + 1)
        hi = tl.minimum(hi, p1 + window)

    qb_rows = offs_m * 0
    qb_max = p0 * 0
    if HAS_BLOCKS:
        qb_rows = tl.load(QB + b * qb_bstride + offs_m, mask=row_ok, other=NEG_INT)
        qb_max = tl.max(qb_rows, 0)
    kvb_base = KVB + b * kvb_bstride
    pad_base = PAD + b * pad_bstride

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    acc, m_i, l_i = _segment(
        acc,
        m_i,
        l_i,
        q,
        K0 + b * sk0_b + kvh * sk0_h,
        V0 + b * sv0_b + kvh * sv0_h,
        sk0_n,
        sk0_d,
        sv0_n,
        sv0_d,
        0,
        L0,
        lo,
        hi,
        offs_m,
        offs_d,
        Lq,
        D,
        q_offset,
        window,
        qk_scale,
        qb_rows,
        qb_max,
        kvb_base,
        pad_base,
        pad_len,
        CAUSAL,
        HAS_WINDOW,
        HAS_BLOCKS,
        HAS_PAD,
        BLOCK_N,
        IEEE,
    )
    if TWO_SEGS:
        acc, m_i, l_i = _segment(
            acc,
            m_i,
            l_i,
            q,
            K1 + b * sk1_b + kvh * sk1_h,
            V1 + b * sv1_b + kvh * sv1_h,
            sk1_n,
            sk1_d,
            sv1_n,
            sv1_d,
            L0,
            L1,
            lo,
            hi,
            offs_m,
            offs_d,
            Lq,
            D,
            q_offset,
            window,
            qk_scale,
            qb_rows,
            qb_max,
            kvb_base,
            pad_base,
            pad_len,
            CAUSAL,
            HAS_WINDOW,
            HAS_BLOCKS,
            HAS_PAD,
            BLOCK_N,
            IEEE,
        )
    # a query that saw no key outputs zeros
    inv = tl.where(l_i > 0.0, 1.0 / tl.where(l_i > 0.0, l_i, 1.0), 0.0)
    out = acc * inv[:, None]
    tl.store(
        Out + b * so_b + h * so_h + offs_m[:, None] * so_m + offs_d[None, :] * so_d,
        out.to(Out.dtype.element_ty),
        mask=row_ok[:, None] & (offs_d[None, :] < D),
    )


def launch(
    args: dict, grid: tuple[int, int], block_m: int, block_n: int, block_d: int, num_warps: int, num_stages: int
) -> None:
    attention_kernel[grid](
        **args, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=num_warps, num_stages=num_stages
    )
