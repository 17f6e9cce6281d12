// Fused sampling updates on CUDA: one grid-stride pass per step, float32 math for
// float32/float16/bfloat16 and float64 for float64 (same formulas as cpu_sampling.cpp).
#include "cuda_common.cuh"
#include "cuda_launch.h"

namespace lrk {
namespace {

constexpr int kThreads = 256;

inline unsigned grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

#define LRK_GRID_LOOP(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

template <typename T, bool CLIP, bool NOISE>
__global__ void diffusion_kernel(int64_t n, const T* x, const T* eps, const T* noise, T* out, DiffusionCoef k) {
  using C = typename DConv<T>::math;
  LRK_GRID_LOOP(i, n) {
    C xt = DConv<T>::load(x[i]), e = DConv<T>::load(eps[i]);
    C x0 = C(k.ax) * xt + C(k.ae) * e;
    if (CLIP) {
      const C clip = C(k.clip);
      x0 = x0 < -clip ? -clip : (x0 > clip ? clip : x0);
      e = (xt - C(k.sqrt_acp) * x0) * C(k.inv_sqrt_1m_acp);
    }
    C r = C(k.k_x0) * x0 + C(k.k_xt) * xt + C(k.k_eps) * e;
    if (NOISE) r += C(k.k_noise) * C(DConv<T>::load(noise[i]));
    out[i] = DConv<T>::store(r);
  }
}

template <typename T>
__global__ void euler_kernel(int64_t n, const T* x, const T* v, T* out, double dt) {
  using C = typename DConv<T>::math;
  const C h = C(dt);
  LRK_GRID_LOOP(i, n) out[i] = DConv<T>::store(C(DConv<T>::load(x[i])) + h * C(DConv<T>::load(v[i])));
}

template <typename T>
__global__ void heun_kernel(int64_t n, const T* x, const T* v, const T* vn, T* out, double dt) {
  using C = typename DConv<T>::math;
  const C h = C(0.5 * dt);
  LRK_GRID_LOOP(i, n) {
    out[i] = DConv<T>::store(C(DConv<T>::load(x[i])) + h * (C(DConv<T>::load(v[i])) + C(DConv<T>::load(vn[i]))));
  }
}

template <typename T>
__global__ void edm_euler_kernel(int64_t n, const T* x, const T* den, T* ox, T* os, double sh, double sn) {
  using C = typename DConv<T>::math;
  const C inv = C(1.0 / sh), h = C(sn - sh);
  LRK_GRID_LOOP(i, n) {
    C xv = DConv<T>::load(x[i]);
    C slope = (xv - C(DConv<T>::load(den[i]))) * inv;
    os[i] = DConv<T>::store(slope);
    ox[i] = DConv<T>::store(xv + h * slope);
  }
}

template <typename T>
__global__ void edm_heun_kernel(int64_t n, const T* xh, const T* s, const T* dn, const T* xn, T* out, double sh,
                                double sn) {
  using C = typename DConv<T>::math;
  const C inv = C(1.0 / sn), h = C(0.5 * (sn - sh));
  LRK_GRID_LOOP(i, n) {
    C slope_next = (C(DConv<T>::load(xn[i])) - C(DConv<T>::load(dn[i]))) * inv;
    out[i] = DConv<T>::store(C(DConv<T>::load(xh[i])) + h * (C(DConv<T>::load(s[i])) + slope_next));
  }
}

template <typename F>
void by_dtype(int dtype, F f) {
  switch (dtype) {
    case kF32: f(float{}); break;
    case kF16: f(__half{}); break;
    case kBF16: f(__nv_bfloat16{}); break;
    case kF64: f(double{}); break;
    default: throw std::runtime_error("librobot-kernels cuda sampling: unsupported dtype code");
  }
}

}  // namespace

void cuda_diffusion_step(int dtype, int64_t n, const void* x, const void* eps, const void* noise, void* out,
                         const DiffusionCoef& k, void* stream) {
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  by_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto X = static_cast<const T*>(x), E = static_cast<const T*>(eps), Z = static_cast<const T*>(noise);
    auto O = static_cast<T*>(out);
    if (k.has_clip && noise) diffusion_kernel<T, true, true><<<grid_for(n), kThreads, 0, s>>>(n, X, E, Z, O, k);
    else if (k.has_clip) diffusion_kernel<T, true, false><<<grid_for(n), kThreads, 0, s>>>(n, X, E, Z, O, k);
    else if (noise) diffusion_kernel<T, false, true><<<grid_for(n), kThreads, 0, s>>>(n, X, E, Z, O, k);
    else diffusion_kernel<T, false, false><<<grid_for(n), kThreads, 0, s>>>(n, X, E, Z, O, k);
  });
  check_launch("librobot-kernels cuda diffusion_step");
}

void cuda_euler_step(int dtype, int64_t n, const void* x, const void* v, void* out, double dt, void* stream) {
  if (n == 0) return;
  by_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    euler_kernel<T><<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        n, static_cast<const T*>(x), static_cast<const T*>(v), static_cast<T*>(out), dt);
  });
  check_launch("librobot-kernels cuda euler_step");
}

void cuda_heun_step(int dtype, int64_t n, const void* x, const void* v, const void* vn, void* out, double dt,
                    void* stream) {
  if (n == 0) return;
  by_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    heun_kernel<T><<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        n, static_cast<const T*>(x), static_cast<const T*>(v), static_cast<const T*>(vn), static_cast<T*>(out), dt);
  });
  check_launch("librobot-kernels cuda heun_step");
}

void cuda_edm_euler_step(int dtype, int64_t n, const void* x, const void* den, void* out_x, void* out_slope,
                         double sigma_hat, double sigma_next, void* stream) {
  if (n == 0) return;
  by_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    edm_euler_kernel<T><<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        n, static_cast<const T*>(x), static_cast<const T*>(den), static_cast<T*>(out_x), static_cast<T*>(out_slope),
        sigma_hat, sigma_next);
  });
  check_launch("librobot-kernels cuda edm_euler_step");
}

void cuda_edm_heun_step(int dtype, int64_t n, const void* x_hat, const void* slope, const void* den_next,
                        const void* x_next, void* out, double sigma_hat, double sigma_next, void* stream) {
  if (n == 0) return;
  by_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    edm_heun_kernel<T><<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        n, static_cast<const T*>(x_hat), static_cast<const T*>(slope), static_cast<const T*>(den_next),
        static_cast<const T*>(x_next), static_cast<T*>(out), sigma_hat, sigma_next);
  });
  check_launch("librobot-kernels cuda edm_heun_step");
}

}  // namespace lrk
