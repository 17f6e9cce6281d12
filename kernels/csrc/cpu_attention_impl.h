// Tiled online-softmax attention for the CPU. Included by one translation unit per instruction
// set (generic, AVX2+FMA on x86), each defining LRK_ISA to name its namespace and entry point.
//
// Work item = (batch, kv head, query head in the group, tile of BQ queries). Scores are computed
// transposed, S^T = K Q^T (keys are rows), so K is read in place with no transpose and the
// softmax statistics are vectors across queries (no horizontal reductions). Key tiles whose
// mask is empty for every query of the item are skipped; tiles that are entirely visible skip
// the per-element mask.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.h"

namespace lrk {
namespace LRK_ISA {

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));

static inline v8 load8(const float* p) { v8 r; std::memcpy(&r, p, sizeof r); return r; }
static inline void store8(float* p, v8 x) { std::memcpy(p, &x, sizeof x); }
static inline v8 splat(float x) { return v8{} + x; }

// 2^x for x <= 0; x < -126 (and -inf, i.e. masked) gives exactly 0. Degree-6 Taylor on [-0.5, 0.5]:
// relative error ~2e-7, at the level of float32 rounding.
static inline v8 exp2_neg(v8 x) {
  const v8 lo = splat(-126.0f);
  v8 xc = x < lo ? lo : x;
  const v8 magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  v8 r = (xc + magic) - magic;
  v8 f = xc - r;
  v8 p = splat(1.5403530393381606e-4f);
  p = p * f + 1.3333558146428443e-3f;
  p = p * f + 9.6181291076284772e-3f;
  p = p * f + 5.5504108664821580e-2f;
  p = p * f + 2.4022650695910071e-1f;
  p = p * f + 6.9314718055994531e-1f;
  p = p * f + 1.0f;
  i8 bits;
  std::memcpy(&bits, &p, sizeof bits);
  bits += __builtin_convertvector(r, i8) << 23;
  v8 out;
  std::memcpy(&out, &bits, sizeof out);
  return x < lo ? v8{} : out;
}

constexpr int64_t BQ = 64;  // queries per work item
constexpr int64_t BK = 64;  // keys per tile
constexpr int MR = 6;       // register block: MR rows x 16 columns (12 accumulators)

// C[M x 8*NV] (+)= A[M x K] B[K x 8*NV]. A(r, k) = A[r*ars + k*aks]; B rows have stride ldb.
template <int M, int NV, bool ACC>
static inline void micro(int64_t K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb, float* C,
                         int64_t ldc) {
  v8 c[M][NV];
#pragma GCC unroll 8
  for (int r = 0; r < M; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) c[r][v] = ACC ? load8(C + r * ldc + 8 * v) : v8{};
  for (int64_t k = 0; k < K; ++k) {
    v8 b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) b[v] = load8(B + k * ldb + 8 * v);
    const float* a = A + k * aks;
#pragma GCC unroll 8
    for (int r = 0; r < M; ++r) {
      const float ar = a[r * ars];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) c[r][v] += ar * b[v];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < M; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) store8(C + r * ldc + 8 * v, c[r][v]);
}

template <int M, int NV, bool ACC>
static inline void block(int64_t m, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb,
                         float* C, int64_t ldc) {
  micro<M, NV, ACC>(K, A + m * ars, ars, aks, B, ldb, C + m * ldc, ldc);
}

// Rows in blocks of 6; the last 7..9 rows go as two blocks of 4-5 rather than 6 + a thin 1-3
// (a 2-row block keeps only 4 accumulators busy: e.g. 50 queries = 7 x 6 + 4 + 4).
template <int NV, bool ACC>
static inline void rows(int64_t M, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb,
                        float* C, int64_t ldc) {
  int64_t m = 0;
  for (; M - m > 9; m += MR) block<MR, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc);
  switch (M - m) {
    case 9: block<5, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc); m += 5; [[fallthrough]];
    case 4: block<4, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc); break;
    case 8: block<4, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc); m += 4;
            block<4, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc); break;
    case 7: block<4, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc); m += 4;
            block<3, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc); break;
    case 6: block<6, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc); break;
    case 5: block<5, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc); break;
    case 3: block<3, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc); break;
    case 2: block<2, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc); break;
    case 1: block<1, NV, ACC>(m, K, A, ars, aks, B, ldb, C, ldc); break;
    default: break;
  }
}

// C[M x N] (+)= A B with N a multiple of 8; column strips of 16 (and one of 8) are the outer loop
// so a strip of B stays in L1 while the rows of A stream past it.
template <bool ACC>
static void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B,
                 int64_t ldb, float* C, int64_t ldc) {
  int64_t n = 0;
  for (; n + 16 <= N; n += 16) rows<2, ACC>(M, K, A, ars, aks, B + n, ldb, C + n, ldc);
  if (n < N) rows<1, ACC>(M, K, A, ars, aks, B + n, ldb, C + n, ldc);
}

struct Tile {
  int64_t j0, n;  // first key (global index) and count; a tile never crosses a segment boundary
  int seg;
};

struct Scratch {
  std::vector<float> kc, vc, qt, st, o, m, l, alpha;
  std::vector<int32_t> kmin, kmax;
  std::vector<uint8_t> padk;
};

// Per-thread buffers that persist across calls: fresh pages cost more than the kernel here.
static Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

template <typename V>
static inline void grow(std::vector<V>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

template <typename T>
struct Call {
  const AttnArgs& a;
  int64_t Lk, Dp, G, nqt, BQp_max;
  std::vector<Tile> tiles;
  bool direct_k, direct_v;

  explicit Call(const AttnArgs& args) : a(args) {
    Lk = a.seg_len[0] + a.seg_len[1];
    Dp = round_up(a.D, 16);
    G = a.Hq / a.Hkv;
    nqt = (a.Lq + BQ - 1) / BQ;
    BQp_max = round_up(std::min<int64_t>(BQ, a.Lq), 8);
    for (int s = 0; s < 2; ++s) {
      int64_t base = s == 0 ? 0 : a.seg_len[0];
      for (int64_t j = 0; j < a.seg_len[s]; j += BK) tiles.push_back({base + j, std::min(BK, a.seg_len[s] - j), s});
    }
    // float32 keys/values with unit dim stride are read in place (values also need D % 16 == 0)
    bool f32 = sizeof(T) == 4;
    direct_k = f32 && a.ks[0][3] == 1 && (a.seg_len[1] == 0 || a.ks[1][3] == 1);
    direct_v = f32 && a.D % 16 == 0 && a.vs[0][3] == 1 && (a.seg_len[1] == 0 || a.vs[1][3] == 1);
  }

  const T* kv_row(const void* base, const int64_t* st, int64_t b, int64_t h, int64_t j) const {
    return static_cast<const T*>(base) + b * st[0] + h * st[1] + j * st[2];
  }

  // Convert this (batch, kv head)'s keys/values to float32 rows when they cannot be read in place.
  void pack_kv(Scratch& s, int64_t b, int64_t kvh) const {
    if (!direct_k) grow(s.kc, size_t(Lk * a.D));
    if (!direct_v) grow(s.vc, size_t(Lk * Dp));
    for (int64_t j = 0; j < Lk; ++j) {
      int seg = j < a.seg_len[0] ? 0 : 1;
      int64_t jj = seg == 0 ? j : j - a.seg_len[0];
      if (!direct_k) {
        const T* src = kv_row(a.k[seg], a.ks[seg], b, kvh, jj);
        float* dst = s.kc.data() + j * a.D;
        for (int64_t d = 0; d < a.D; ++d) dst[d] = Cv<T>::load(src[d * a.ks[seg][3]]);
      }
      if (!direct_v) {
        const T* src = kv_row(a.v[seg], a.vs[seg], b, kvh, jj);
        float* dst = s.vc.data() + j * Dp;
        for (int64_t d = 0; d < a.D; ++d) dst[d] = Cv<T>::load(src[d * a.vs[seg][3]]);
        for (int64_t d = a.D; d < Dp; ++d) dst[d] = 0.0f;
      }
    }
  }

  // Per key tile of batch b: min/max block id and whether the padding mask hides none/all/some keys.
  void tile_meta(Scratch& s, int64_t b) const {
    size_t nt = tiles.size();
    grow(s.kmin, nt);
    grow(s.kmax, nt);
    grow(s.padk, nt);
    for (size_t t = 0; t < nt; ++t) {
      const Tile& tl = tiles[t];
      if (a.kv_blocks) {
        const int32_t* kb = a.kv_blocks + b * a.kvb_bstride + tl.j0;
        int32_t lo = kb[0], hi = kb[0];
        for (int64_t c = 1; c < tl.n; ++c) lo = std::min(lo, kb[c]), hi = std::max(hi, kb[c]);
        s.kmin[t] = lo;
        s.kmax[t] = hi;
      }
      if (a.pad) {
        int64_t visible = 0;
        for (int64_t c = 0; c < tl.n; ++c) {
          int64_t j = tl.j0 + c;
          visible += (j >= a.pad_len || a.pad[b * a.pad_bstride + j]) ? 1 : 0;
        }
        s.padk[t] = visible == 0 ? kEmpty : (visible == tl.n ? kFull : kPartial);
      }
    }
  }

  // Hide the invisible scores of a partially masked tile (S^T: one row per key). Per key, the
  // padding hides the whole row and the causal/window band leaves one contiguous range of
  // queries; only block ids need a per-element (vectorisable) comparison.
  void mask_tile(float* st, int64_t BQp, int64_t b, int64_t r0, int64_t mr, int64_t j0, int64_t n) const {
    const float ninf = -std::numeric_limits<float>::infinity();
    const int64_t p0 = a.q_offset + r0;
    const int32_t* qb = a.q_blocks ? a.q_blocks + b * a.qb_bstride + r0 : nullptr;
    for (int64_t c = 0; c < n; ++c) {
      const int64_t j = j0 + c;
      float* row = st + c * BQp;
      if (a.pad && j < a.pad_len && !a.pad[b * a.pad_bstride + j]) {
        std::fill(row, row + mr, ninf);
        continue;
      }
      int64_t lo = 0, hi = mr;  // queries i in [lo, hi) pass the position masks
      if (a.causal) lo = std::max(lo, j - p0);
      if (a.window > 0) {
        lo = std::max(lo, j - a.window - p0 + 1);
        hi = std::min(hi, j + a.window - p0);
      }
      lo = std::min(std::max<int64_t>(lo, 0), mr);
      hi = std::max(std::min(hi, mr), lo);
      std::fill(row, row + lo, ninf);
      std::fill(row + hi, row + mr, ninf);
      if (qb) {
        const int32_t kb = a.kv_blocks[b * a.kvb_bstride + j];
        for (int64_t i = lo; i < hi; ++i) row[i] = kb > qb[i] ? ninf : row[i];
      }
    }
  }

  // Returns how many key tiles were computed (the rest were skipped as fully masked).
  int64_t item(Scratch& s, int64_t b, int64_t kvh, int64_t h, int64_t qt) const {
    const int64_t r0 = qt * BQ, mr = std::min(BQ, a.Lq - r0), BQp = round_up(mr, 8), D = a.D;
    float* qtile = s.qt.data();  // [D][BQp]: Q^T, pre-scaled by scale * log2(e) so exp2 can be used
    float* st = s.st.data();     // [BK][BQp]: scores, then probabilities
    float* o = s.o.data();       // [BQ][Dp]
    float *m = s.m.data(), *l = s.l.data(), *alpha = s.alpha.data();
    const float qscale = a.scale * 1.4426950408889634f;
    const T* qbase = static_cast<const T*>(a.q) + b * a.qs[0] + h * a.qs[1] + r0 * a.qs[2];
    for (int64_t i = 0; i < BQp; ++i)
      for (int64_t d = 0; d < D; ++d)
        qtile[d * BQp + i] = i < mr ? Cv<T>::load(qbase[i * a.qs[2] + d * a.qs[3]]) * qscale : 0.0f;
    std::fill(m, m + BQp, -std::numeric_limits<float>::infinity());
    std::fill(l, l + BQp, 0.0f);
    std::fill(o, o + mr * Dp, 0.0f);

    const int64_t p0 = a.q_offset + r0, p1 = p0 + mr - 1;
    int32_t qb_lo = 0, qb_hi = 0;
    if (a.q_blocks) {
      const int32_t* qb = a.q_blocks + b * a.qb_bstride + r0;
      qb_lo = qb_hi = qb[0];
      for (int64_t i = 1; i < mr; ++i) qb_lo = std::min(qb_lo, qb[i]), qb_hi = std::max(qb_hi, qb[i]);
    }
    int64_t lo, hi;
    position_key_range(a, p0, p1, Lk, &lo, &hi);

    int64_t computed = 0;
    for (size_t t = 0; t < tiles.size(); ++t) {
      const Tile& tl = tiles[t];
      const int64_t j1 = tl.j0 + tl.n - 1;
      if (j1 < lo || tl.j0 >= hi) continue;
      int kind = position_tile_kind(a, p0, p1, tl.j0, j1);
      if (a.kv_blocks) {
        if (s.kmin[t] > qb_hi) kind = kEmpty;
        else if (s.kmax[t] > qb_lo && kind == kFull) kind = kPartial;
      }
      if (a.pad) {
        if (s.padk[t] == kEmpty) kind = kEmpty;
        else if (s.padk[t] == kPartial && kind == kFull) kind = kPartial;
      }
      if (kind == kEmpty) continue;  // fully masked tile: never computed
      ++computed;

      // S^T[n x BQp] = K_tile[n x D] Q^T[D x BQp]
      const float* kt;
      int64_t kstride;
      if (direct_k) {
        int64_t jj = tl.seg == 0 ? tl.j0 : tl.j0 - a.seg_len[0];
        kt = reinterpret_cast<const float*>(kv_row(a.k[tl.seg], a.ks[tl.seg], b, kvh, jj));
        kstride = a.ks[tl.seg][2];
      } else {
        kt = s.kc.data() + tl.j0 * D;
        kstride = D;
      }
      gemm<false>(tl.n, BQp, D, kt, kstride, 1, qtile, BQp, st, BQp);

      if (kind == kPartial) mask_tile(st, BQp, b, r0, mr, tl.j0, tl.n);

      // Online softmax, 8 queries at a time. A query with nothing visible so far keeps m = -inf;
      // using 0 as its reference makes every weight exp2(-inf) = 0 instead of NaN.
      for (int64_t i = 0; i < BQp; i += 8) {
        v8 mold = load8(m + i), mx = mold;
        for (int64_t c = 0; c < tl.n; ++c) {
          v8 sc = load8(st + c * BQp + i);
          mx = sc > mx ? sc : mx;
        }
        v8 ref = mx == splat(-std::numeric_limits<float>::infinity()) ? v8{} : mx;
        v8 sum{};
        for (int64_t c = 0; c < tl.n; ++c) {
          v8 p = exp2_neg(load8(st + c * BQp + i) - ref);
          store8(st + c * BQp + i, p);
          sum += p;
        }
        v8 al = exp2_neg(mold - ref);
        store8(l + i, load8(l + i) * al + sum);
        store8(m + i, mx);
        store8(alpha + i, al);
      }
      for (int64_t i = 0; i < mr; ++i) {
        if (alpha[i] == 1.0f) continue;
        float* orow = o + i * Dp;
        for (int64_t d = 0; d < Dp; ++d) orow[d] *= alpha[i];
      }

      // O[mr x Dp] += P[mr x n] V_tile[n x Dp], P read from S^T (P(i, c) = st[c*BQp + i])
      const float* vt;
      int64_t vstride;
      if (direct_v) {
        int64_t jj = tl.seg == 0 ? tl.j0 : tl.j0 - a.seg_len[0];
        vt = reinterpret_cast<const float*>(kv_row(a.v[tl.seg], a.vs[tl.seg], b, kvh, jj));
        vstride = a.vs[tl.seg][2];
      } else {
        vt = s.vc.data() + tl.j0 * Dp;
        vstride = Dp;
      }
      gemm<true>(mr, Dp, tl.n, st, 1, BQp, vt, vstride, o, Dp);
    }

    // A query that saw no key outputs zeros (the reference's rule for fully masked rows).
    T* obase = static_cast<T*>(a.out) + b * a.os[0] + h * a.os[1] + r0 * a.os[2];
    for (int64_t i = 0; i < mr; ++i) {
      const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
      for (int64_t d = 0; d < D; ++d) obase[i * a.os[2] + d * a.os[3]] = Cv<T>::store(o[i * Dp + d] * inv);
    }
    return computed;
  }

  int64_t run() const {
    const int64_t items = a.B * a.Hq * nqt;
    int64_t computed = 0;
    int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
    if (items < threads) threads = int(items);
#pragma omp parallel num_threads(threads) reduction(+ : computed)
    {
      Scratch& s = scratch();
      grow(s.qt, size_t(a.D * BQp_max));
      grow(s.st, size_t(BK * BQp_max));
      grow(s.o, size_t(BQ * Dp));
      grow(s.m, size_t(BQp_max));
      grow(s.l, size_t(BQp_max));
      grow(s.alpha, size_t(BQp_max));
      int64_t have_b = -1, have_kvh = -1;
      // Dynamic: on a busy machine a descheduled thread would stall a static split; consecutive
      // items share a (batch, kv head), so a thread repacks only when it moves to another one
      // (float32 keys/values are read in place and need no packing at all).
#pragma omp for schedule(dynamic, 1)
      for (int64_t it = 0; it < items; ++it) {
        int64_t qt = it % nqt, rest = it / nqt;
        int64_t g = rest % G;
        rest /= G;
        int64_t kvh = rest % a.Hkv, b = rest / a.Hkv;
        if (b != have_b) tile_meta(s, b);
        if (b != have_b || kvh != have_kvh) pack_kv(s, b, kvh);
        have_b = b;
        have_kvh = kvh;
        computed += item(s, b, kvh, kvh * G + g, qt);
      }
    }
    return computed;
  }
};

// Returns the number of (query tile, key tile) products computed, for tests of tile skipping.
inline int64_t attention(const AttnArgs& a) {
  switch (a.dtype) {
    case kF32: return Call<float>(a).run();
    case kF16: return Call<Half>(a).run();
    case kBF16: return Call<BFloat16>(a).run();
    default: return -1;  // the Python side only sends supported dtypes
  }
}

}  // namespace LRK_ISA
}  // namespace lrk
