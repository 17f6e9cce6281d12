// Tiled online-softmax attention on CUDA cores (float32 math, no tensor cores): the portable GPU
// path (it is the one that runs on a Jetson, where Triton is not available).
//
// Block = 4 warps = 16 query rows of one (batch, head); key tiles of 32 keys are staged in shared
// memory as float32. For each row, lane c scores key c, the warp reduces max/sum with shuffles,
// and each lane accumulates D/32 output dims. Tiles that the masks hide from all 16 rows are
// skipped (the decision is uniform across the block, so no thread diverges from __syncthreads).
#include <climits>
#include <cmath>

#include "cuda_common.cuh"
#include "cuda_launch.h"

namespace lrk {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 4;
constexpr int kQRows = kWarps * kRowsPerWarp;
constexpr int kBK = 32;  // keys per tile: one per lane
constexpr unsigned kFull32 = 0xffffffffu;

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull32, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull32, v, o);
  return v;
}
__device__ __forceinline__ int warp_min_i(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(kFull32, v, o));
  return v;
}
__device__ __forceinline__ int warp_max_i(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(kFull32, v, o));
  return v;
}

__device__ __forceinline__ bool element_visible(const AttnArgs& a, int64_t b, int64_t i, int64_t j) {
  if (!position_visible(a, a.q_offset + i, j)) return false;
  if (a.kv_blocks && a.kv_blocks[b * a.kvb_bstride + j] > a.q_blocks[b * a.qb_bstride + i]) return false;
  if (a.pad && j < a.pad_len && !a.pad[b * a.pad_bstride + j]) return false;
  return true;
}

template <int DMAX>
constexpr size_t smem_bytes() {
  return sizeof(float) * (size_t(kQRows) * DMAX + size_t(kBK) * (DMAX + 1) + size_t(kBK) * DMAX);
}

template <typename T, int DMAX>
__global__ void __launch_bounds__(kWarps * 32) attention_kernel(const AttnArgs a) {
  extern __shared__ float smem[];
  float* qs = smem;                  // [kQRows][DMAX], scaled by scale*log2(e)
  float* ks = qs + kQRows * DMAX;    // [kBK][DMAX + 1]: +1 so lane c reading row c hits distinct banks
  float* vs = ks + kBK * (DMAX + 1); // [kBK][DMAX]
  constexpr int DPL = DMAX / 32;     // output dims per lane

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t b = blockIdx.x / a.Hq, h = blockIdx.x % a.Hq, kvh = h / (a.Hq / a.Hkv);
  const int64_t r0 = int64_t(blockIdx.y) * kQRows;
  const int mr = int(min(int64_t(kQRows), a.Lq - r0));
  const int64_t D = a.D, Lk = a.seg_len[0] + a.seg_len[1];
  const float qscale = a.scale * 1.4426950408889634f;

  const T* qbase = static_cast<const T*>(a.q) + b * a.qs[0] + h * a.qs[1] + r0 * a.qs[2];
  for (int idx = threadIdx.x; idx < kQRows * DMAX; idx += blockDim.x) {
    int i = idx / DMAX, d = idx % DMAX;
    qs[idx] = (i < mr && d < D) ? DConv<T>::load(qbase[i * a.qs[2] + d * a.qs[3]]) * qscale : 0.0f;
  }

  float o[kRowsPerWarp][DPL], m[kRowsPerWarp], l[kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int u = 0; u < DPL; ++u) o[rr][u] = 0.0f;
  }

  const int64_t p0 = a.q_offset + r0, p1 = p0 + mr - 1;
  int qb_lo = 0, qb_hi = 0;
  if (a.q_blocks) {
    const int32_t* qb = a.q_blocks + b * a.qb_bstride + r0;
    qb_lo = qb_hi = qb[0];
    for (int i = 1; i < mr; ++i) qb_lo = min(qb_lo, qb[i]), qb_hi = max(qb_hi, qb[i]);
  }
  int64_t lo, hi;
  position_key_range(a, p0, p1, Lk, &lo, &hi);

  for (int seg = 0; seg < 2; ++seg) {
    const int64_t base = seg == 0 ? 0 : a.seg_len[0], len = a.seg_len[seg];
    const T* kseg = static_cast<const T*>(a.k[seg]);
    const T* vseg = static_cast<const T*>(a.v[seg]);
    for (int64_t t0 = 0; t0 < len; t0 += kBK) {
      const int64_t j0 = base + t0;
      const int n = int(min(int64_t(kBK), len - t0));
      const int64_t j1 = j0 + n - 1;
      if (j1 < lo || j0 >= hi) continue;
      int kind = position_tile_kind(a, p0, p1, j0, j1);
      if (kind != kEmpty && a.kv_blocks) {
        bool in = lane < n;
        int kb = in ? a.kv_blocks[b * a.kvb_bstride + j0 + lane] : 0;
        int kmin = warp_min_i(in ? kb : INT_MAX), kmax = warp_max_i(in ? kb : INT_MIN);
        if (kmin > qb_hi) kind = kEmpty;
        else if (kmax > qb_lo && kind == kFull) kind = kPartial;
      }
      if (kind != kEmpty && a.pad) {
        int64_t j = j0 + lane;
        bool vis = lane < n && (j >= a.pad_len || a.pad[b * a.pad_bstride + j]);
        int cnt = __popc(__ballot_sync(kFull32, vis));
        if (cnt == 0) kind = kEmpty;
        else if (cnt < n && kind == kFull) kind = kPartial;
      }
      if (kind == kEmpty) continue;  // same decision in every warp

      __syncthreads();  // the previous tile is no longer read
      const int64_t jj = j0 - base;
      for (int idx = threadIdx.x; idx < kBK * DMAX; idx += blockDim.x) {
        int c = idx / DMAX, d = idx % DMAX;
        float kv = 0.0f, vv = 0.0f;  // zero-fill: p = 0 must not meet NaN garbage
        if (c < n && d < D) {
          kv = DConv<T>::load(kseg[b * a.ks[seg][0] + kvh * a.ks[seg][1] + (jj + c) * a.ks[seg][2] + d * a.ks[seg][3]]);
          vv = DConv<T>::load(vseg[b * a.vs[seg][0] + kvh * a.vs[seg][1] + (jj + c) * a.vs[seg][2] + d * a.vs[seg][3]]);
        }
        ks[c * (DMAX + 1) + d] = kv;
        vs[c * DMAX + d] = vv;
      }
      __syncthreads();

#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const int i = warp * kRowsPerWarp + rr;
        if (i >= mr) break;  // uniform within the warp
        float s = -INFINITY;
        if (lane < n) {
          const float* qrow = qs + i * DMAX;
          const float* krow = ks + lane * (DMAX + 1);
          float acc = 0.0f;
          for (int d = 0; d < D; ++d) acc = fmaf(qrow[d], krow[d], acc);
          s = acc;
          if (kind == kPartial && !element_visible(a, b, r0 + i, j0 + lane)) s = -INFINITY;
        }
        const float mnew = fmaxf(m[rr], warp_max(s));
        const float ref = mnew == -INFINITY ? 0.0f : mnew;  // nothing visible yet: weights stay 0
        const float p = s == -INFINITY ? 0.0f : exp2f(s - ref);
        const float alpha = exp2f(m[rr] - ref);
        l[rr] = l[rr] * alpha + warp_sum(p);
        m[rr] = mnew;
#pragma unroll
        for (int u = 0; u < DPL; ++u) o[rr][u] *= alpha;
        for (int c = 0; c < n; ++c) {
          const float pc = __shfl_sync(kFull32, p, c);
#pragma unroll
          for (int u = 0; u < DPL; ++u) o[rr][u] = fmaf(pc, vs[c * DMAX + u * 32 + lane], o[rr][u]);
        }
      }
    }
  }

  T* obase = static_cast<T*>(a.out) + b * a.os[0] + h * a.os[1] + r0 * a.os[2];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int i = warp * kRowsPerWarp + rr;
    if (i >= mr) break;
    const float inv = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;  // a row that saw no key outputs zeros
#pragma unroll
    for (int u = 0; u < DPL; ++u) {
      const int d = u * 32 + lane;
      if (d < D) obase[i * a.os[2] + d * a.os[3]] = DConv<T>::store(o[rr][u] * inv);
    }
  }
}

template <typename T, int DMAX>
void launch(const AttnArgs& a, cudaStream_t stream) {
  constexpr size_t bytes = smem_bytes<DMAX>();
  // Opt in to > 48 KiB of shared memory, once per device and instantiation.
  static unsigned long long configured = 0;
  int dev = 0;
  cudaGetDevice(&dev);
  const unsigned long long bit = 1ull << (dev & 63);
  if (!(configured & bit)) {
    if (cudaFuncSetAttribute(attention_kernel<T, DMAX>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)) !=
        cudaSuccess)
      check_launch("librobot-kernels cuda attention (shared memory opt-in)");
    configured |= bit;
  }
  dim3 grid(unsigned(a.B * a.Hq), unsigned((a.Lq + kQRows - 1) / kQRows));
  attention_kernel<T, DMAX><<<grid, kWarps * 32, bytes, stream>>>(a);
  check_launch("librobot-kernels cuda attention");
}

template <typename T>
void launch_d(const AttnArgs& a, cudaStream_t stream) {
  if (a.D <= 64) launch<T, 64>(a, stream);
  else if (a.D <= 128) launch<T, 128>(a, stream);
  else launch<T, 256>(a, stream);  // the Python side declines D > 256
}

}  // namespace

void cuda_attention(const AttnArgs& a, void* stream) {
  if (a.B * a.Hq == 0 || a.Lq == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (a.dtype) {
    case kF32: launch_d<float>(a, s); break;
    case kF16: launch_d<__half>(a, s); break;
    case kBF16: launch_d<__nv_bfloat16>(a, s); break;
    default: throw std::runtime_error("librobot-kernels cuda attention: unsupported dtype code");
  }
}

}  // namespace lrk
