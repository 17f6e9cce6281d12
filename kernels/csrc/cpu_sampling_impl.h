// Fused sampling updates on the CPU: one pass over the action tensor per step, float32 math for
// float32/float16/bfloat16 and float64 math for float64. `out` may alias any input: each element
// is read before it is written. Included by one translation unit per instruction set (LRK_ISA),
// like the attention kernel.
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "common.h"
#include "sampling.h"

namespace lrk {
namespace LRK_ISA {
namespace {

// Action tensors are small (B x 50 x 32); threads only pay off for much larger ones.
constexpr int64_t kParallelMin = int64_t(1) << 18;

template <typename F>
void for_range(int64_t n, F f) {
  if (n < kParallelMin || omp_get_max_threads() == 1) {
    f(int64_t(0), n);
    return;
  }
#pragma omp parallel
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (n + nt - 1) / nt, lo = t * chunk, hi = lo + chunk < n ? lo + chunk : n;
    if (lo < hi) f(lo, hi);
  }
}

template <typename T> struct Math { using type = float; };
template <> struct Math<double> { using type = double; };

// The loops take every coefficient by value: coefficients reached through lambda captures may
// alias `out` as far as the compiler knows, which blocked vectorisation (~10x slower).
template <typename T, bool CLIP, bool NOISE, typename C>
void diffusion_range(int64_t lo, int64_t hi, const T* x, const T* eps, const T* noise, T* out, C ax, C ae, C clip,
                     C sa, C inv, C kx0, C kxt, C keps, C kn) {
  for (int64_t i = lo; i < hi; ++i) {
    C xt = Cv<T>::load(x[i]), e = Cv<T>::load(eps[i]);
    C x0 = ax * xt + ae * e;
    if (CLIP) {
      x0 = std::min(std::max(x0, -clip), clip);  // min/max, not branches: it vectorises
      e = (xt - sa * x0) * inv;
    }
    C r = kx0 * x0 + kxt * xt + keps * e;
    if (NOISE) r += kn * C(Cv<T>::load(noise[i]));
    out[i] = Cv<T>::store(r);
  }
}

template <typename T, bool CLIP, bool NOISE>
void diffusion(int64_t n, const T* x, const T* eps, const T* noise, T* out, const DiffusionCoef& k) {
  using C = typename Math<T>::type;
  const C ax = C(k.ax), ae = C(k.ae), clip = C(k.clip), sa = C(k.sqrt_acp), inv = C(k.inv_sqrt_1m_acp);
  const C kx0 = C(k.k_x0), kxt = C(k.k_xt), keps = C(k.k_eps), kn = C(k.k_noise);
  for_range(n, [=](int64_t lo, int64_t hi) {
    diffusion_range<T, CLIP, NOISE, C>(lo, hi, x, eps, noise, out, ax, ae, clip, sa, inv, kx0, kxt, keps, kn);
  });
}

template <typename T>
void diffusion_any(int64_t n, const void* x, const void* eps, const void* noise, void* out, const DiffusionCoef& k) {
  auto X = static_cast<const T*>(x), E = static_cast<const T*>(eps), Z = static_cast<const T*>(noise);
  auto O = static_cast<T*>(out);
  if (k.has_clip) {
    if (noise) diffusion<T, true, true>(n, X, E, Z, O, k);
    else diffusion<T, true, false>(n, X, E, Z, O, k);
  } else {
    if (noise) diffusion<T, false, true>(n, X, E, Z, O, k);
    else diffusion<T, false, false>(n, X, E, Z, O, k);
  }
}

template <typename T>
void euler(int64_t n, const void* x, const void* v, void* out, double dt) {
  using C = typename Math<T>::type;
  auto X = static_cast<const T*>(x), V = static_cast<const T*>(v);
  auto O = static_cast<T*>(out);
  const C h = C(dt);
  for_range(n, [=](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) O[i] = Cv<T>::store(C(Cv<T>::load(X[i])) + h * C(Cv<T>::load(V[i])));
  });
}

template <typename T>
void heun(int64_t n, const void* x, const void* v, const void* vn, void* out, double dt) {
  using C = typename Math<T>::type;
  auto X = static_cast<const T*>(x), V = static_cast<const T*>(v), VN = static_cast<const T*>(vn);
  auto O = static_cast<T*>(out);
  const C h = C(0.5 * dt);
  for_range(n, [=](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      O[i] = Cv<T>::store(C(Cv<T>::load(X[i])) + h * (C(Cv<T>::load(V[i])) + C(Cv<T>::load(VN[i]))));
  });
}

template <typename T>
void edm_euler(int64_t n, const void* x, const void* den, void* out_x, void* out_slope, double sh, double sn) {
  using C = typename Math<T>::type;
  auto X = static_cast<const T*>(x), Dn = static_cast<const T*>(den);
  auto OX = static_cast<T*>(out_x), OS = static_cast<T*>(out_slope);
  const C inv = C(1.0 / sh), h = C(sn - sh);
  for_range(n, [=](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      C xv = Cv<T>::load(X[i]);
      C slope = (xv - C(Cv<T>::load(Dn[i]))) * inv;
      OS[i] = Cv<T>::store(slope);
      OX[i] = Cv<T>::store(xv + h * slope);
    }
  });
}

template <typename T>
void edm_heun(int64_t n, const void* xh, const void* slope, const void* dn, const void* xn, void* out, double sh,
              double sn) {
  using C = typename Math<T>::type;
  auto XH = static_cast<const T*>(xh), S = static_cast<const T*>(slope), DN = static_cast<const T*>(dn);
  auto XN = static_cast<const T*>(xn);
  auto O = static_cast<T*>(out);
  const C inv = C(1.0 / sn), h = C(0.5 * (sn - sh));
  for_range(n, [=](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      C slope_next = (C(Cv<T>::load(XN[i])) - C(Cv<T>::load(DN[i]))) * inv;
      O[i] = Cv<T>::store(C(Cv<T>::load(XH[i])) + h * (C(Cv<T>::load(S[i])) + slope_next));
    }
  });
}

#ifndef LRK_DISPATCH
#define LRK_DISPATCH(dtype, FN, ...)                   \
  switch (dtype) {                                     \
    case kF32: FN<float>(__VA_ARGS__); break;          \
    case kF16: FN<Half>(__VA_ARGS__); break;           \
    case kBF16: FN<BFloat16>(__VA_ARGS__); break;      \
    case kF64: FN<double>(__VA_ARGS__); break;         \
    default: break;                                    \
  }
#endif

}  // namespace

inline void diffusion_step(int dtype, int64_t n, const void* x, const void* eps, const void* noise, void* out,
                        const DiffusionCoef& k) {
  LRK_DISPATCH(dtype, diffusion_any, n, x, eps, noise, out, k)
}
inline void euler_step(int dtype, int64_t n, const void* x, const void* v, void* out, double dt) {
  LRK_DISPATCH(dtype, euler, n, x, v, out, dt)
}
inline void heun_step(int dtype, int64_t n, const void* x, const void* v, const void* vn, void* out, double dt) {
  LRK_DISPATCH(dtype, heun, n, x, v, vn, out, dt)
}
inline void edm_euler_step(int dtype, int64_t n, const void* x, const void* den, void* ox, void* os, double sh,
                        double sn) {
  LRK_DISPATCH(dtype, edm_euler, n, x, den, ox, os, sh, sn)
}
inline void edm_heun_step(int dtype, int64_t n, const void* xh, const void* slope, const void* dn, const void* xn,
                       void* out, double sh, double sn) {
  LRK_DISPATCH(dtype, edm_heun, n, xh, slope, dn, xn, out, sh, sn)
}

}  // namespace LRK_ISA
}  // namespace lrk
