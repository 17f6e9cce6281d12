// Shared by the CPU and CUDA kernels: dtype codes, fp16/bf16 bit conversions, and the
// attention mask logic (per element and per tile), so both backends agree with the reference.
#pragma once

#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define LRK_HD __host__ __device__ __forceinline__
#else
#define LRK_HD inline
#endif

namespace lrk {

// Must match librobot/kernels/_arrays.py.
enum DType : int { kF32 = 0, kF16 = 1, kBF16 = 2, kF64 = 3 };

#ifndef __CUDACC__
// Bit-exact IEEE conversions (round to nearest even); portable C++ with no ISA requirement.
struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp == 0) {
    if (man == 0) return bits_to_float(sign);
    // subnormal: value = man * 2^-24
    float f = float(man) * 5.9604644775390625e-08f;
    return sign ? -f : f;
  }
  return bits_to_float(sign | ((exp + 112u) << 23) | (man << 13));
}

inline uint16_t float_to_half(float f) {
  uint32_t u = float_to_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u);  // inf / nan
  if (a >= 0x477ff000u) return sign | 0x7c00u;                                      // rounds to inf
  if (a < 0x38800000u) {                                                             // subnormal or zero
    // add a magic number so the FPU rounds the mantissa at the right place
    float v = bits_to_float(a) + 0.5f;
    return sign | uint16_t(float_to_bits(v) - 0x3f000000u);
  }
  uint32_t odd = (a >> 13) & 1u;
  a += 0xc8000fffu + odd;  // rebias exponent (-112 << 23) and round to nearest even
  return sign | uint16_t(a >> 13);
}

inline float bf16_to_float(uint16_t b) { return bits_to_float(uint32_t(b) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet nan
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

template <typename T> struct Conv;
template <> struct Conv<float> {
  static float load(float v) { return v; }
  static float store(float v) { return v; }
};
template <> struct Conv<double> {
  static double load(double v) { return v; }
  static double store(double v) { return v; }
};
template <> struct Conv<Half> {
  static float load(Half v) { return half_to_float(v.bits); }
  static Half store(float v) { return Half{float_to_half(v)}; }
};
template <> struct Conv<BFloat16> {
  static float load(BFloat16 v) { return bf16_to_float(v.bits); }
  static BFloat16 store(float v) { return BFloat16{float_to_bf16(v)}; }
};
#endif

// ------------------------------------------------------------------------------- attention
// Everything the kernels need to know about one call; pointers are device or host addresses.
struct AttnArgs {
  int dtype;
  int64_t B, Hq, Hkv, Lq, D;
  const void* q;
  int64_t qs[4];  // strides in elements: batch, head, token, dim
  // Keys come in up to two segments (a cached prefix, then the chunk's own tokens).
  const void* k[2];
  const void* v[2];
  int64_t ks[2][4], vs[2][4];
  int64_t seg_len[2];
  void* out;
  int64_t os[4];
  float scale;
  int causal;
  int64_t window;    // 0: no window
  int64_t q_offset;  // absolute position of query 0
  const int32_t* q_blocks;  // [B, Lq] (batch stride may be 0) or null
  int64_t qb_bstride;
  const int32_t* kv_blocks;  // [B, Lk] or null
  int64_t kvb_bstride;
  const uint8_t* pad;  // key padding [B, pad_len] (1 = visible) or null; keys >= pad_len are visible
  int64_t pad_len, pad_bstride;
  int threads;  // CPU only; 0 = OpenMP default
};

enum TileKind : int { kEmpty = 0, kFull = 1, kPartial = 2 };

// Position masks (causal / window) for a query position and key index.
LRK_HD bool position_visible(const AttnArgs& a, int64_t pq, int64_t j) {
  if (a.causal && j > pq) return false;
  if (a.window > 0) {
    int64_t d = pq - j;
    if (d < 0) d = -d;
    if (d >= a.window) return false;
  }
  return true;
}

// Tile classification from positions only: queries [p0, p1] (absolute, inclusive) vs keys [j0, j1].
LRK_HD int position_tile_kind(const AttnArgs& a, int64_t p0, int64_t p1, int64_t j0, int64_t j1) {
  bool full = true;
  if (a.causal) {
    if (j0 > p1) return kEmpty;
    if (j1 > p0) full = false;
  }
  if (a.window > 0) {
    // smallest |p - j| over the tile: zero if the ranges overlap
    int64_t gap = j0 > p1 ? j0 - p1 : (p0 > j1 ? p0 - j1 : 0);
    if (gap >= a.window) return kEmpty;
    int64_t far = (p1 - j0) > (j1 - p0) ? (p1 - j0) : (j1 - p0);
    if (far >= a.window) full = false;
  }
  return full ? kFull : kPartial;
}

// The key range [lo, hi) that can be visible to queries at positions [p0, p1] (for loop bounds).
LRK_HD void position_key_range(const AttnArgs& a, int64_t p0, int64_t p1, int64_t lk, int64_t* lo, int64_t* hi) {
  int64_t l = 0, h = lk;
  if (a.causal && p1 + 1 < h) h = p1 + 1;
  if (a.window > 0) {
    if (p0 - a.window + 1 > l) l = p0 - a.window + 1;
    if (p1 + a.window < h) h = p1 + a.window;
  }
  if (h < l) h = l;
  *lo = l;
  *hi = h;
}

}  // namespace lrk
