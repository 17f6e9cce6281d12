// Python bindings of the CUDA backend (compiled by the host compiler). Same calling convention
// as _cpu plus a stream address: torch.cuda.current_stream().cuda_stream, so launches follow
// torch's stream and are captured by torch.cuda.graph.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstring>
#include <string>

#include "cuda_launch.h"

namespace py = pybind11;
using Strides = std::array<int64_t, 4>;

namespace {

const void* P(uintptr_t p) { return reinterpret_cast<const void*>(p); }
void* W(uintptr_t p) { return reinterpret_cast<void*>(p); }
void copy4(int64_t* dst, const Strides& s) { std::memcpy(dst, s.data(), 4 * sizeof(int64_t)); }

void attention(int dtype, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t D, uintptr_t q, Strides qs,
               uintptr_t k0, Strides ks0, uintptr_t v0, Strides vs0, int64_t L0, uintptr_t k1, Strides ks1,
               uintptr_t v1, Strides vs1, int64_t L1, uintptr_t out, Strides os, double scale, bool causal,
               int64_t window, int64_t q_offset, uintptr_t q_blocks, int64_t qb_bstride, uintptr_t kv_blocks,
               int64_t kvb_bstride, uintptr_t pad, int64_t pad_len, int64_t pad_bstride, uintptr_t stream) {
  lrk::AttnArgs a{};
  a.dtype = dtype;
  a.B = B, a.Hq = Hq, a.Hkv = Hkv, a.Lq = Lq, a.D = D;
  a.q = P(q);
  copy4(a.qs, qs);
  a.k[0] = P(k0), a.v[0] = P(v0), a.k[1] = P(k1), a.v[1] = P(v1);
  copy4(a.ks[0], ks0), copy4(a.vs[0], vs0), copy4(a.ks[1], ks1), copy4(a.vs[1], vs1);
  a.seg_len[0] = L0, a.seg_len[1] = L1;
  a.out = W(out);
  copy4(a.os, os);
  a.scale = float(scale);
  a.causal = causal ? 1 : 0;
  a.window = window, a.q_offset = q_offset;
  a.q_blocks = static_cast<const int32_t*>(P(q_blocks)), a.qb_bstride = qb_bstride;
  a.kv_blocks = static_cast<const int32_t*>(P(kv_blocks)), a.kvb_bstride = kvb_bstride;
  a.pad = static_cast<const uint8_t*>(P(pad)), a.pad_len = pad_len, a.pad_bstride = pad_bstride;
  lrk::cuda_attention(a, W(stream));
}

py::dict build_info() {
  py::dict d;
  d["version"] = LRK_VERSION;
  d["cuda_compiler"] = LRK_CUDA_COMPILER;
  d["architectures"] = LRK_CUDA_ARCHS;
  d["cuda_runtime_built"] = CUDART_VERSION;  // e.g. 13000 for 13.0
  int rt = 0, drv = 0, count = 0;
  cudaRuntimeGetVersion(&rt);
  d["cuda_runtime"] = rt;
  d["cuda_driver"] = cudaDriverGetVersion(&drv) == cudaSuccess ? py::object(py::int_(drv)) : py::object(py::none());
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    d["devices"] = 0;
    d["device_error"] = cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
  } else {
    d["devices"] = count;
    py::list names;
    for (int i = 0; i < count; ++i) {
      cudaDeviceProp prop{};
      if (cudaGetDeviceProperties(&prop, i) == cudaSuccess)
        names.append(std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")");
    }
    d["device_names"] = names;
  }
  return d;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "librobot-kernels CUDA backend; called through librobot.kernels, not directly.";
  auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("attention", &attention, nogil);
  m.def(
      "diffusion_step",
      [](int t, int64_t n, uintptr_t x, uintptr_t eps, uintptr_t noise, uintptr_t out, double ax, double ae,
         bool has_clip, double clip, double sqrt_acp, double inv_sqrt_1m_acp, double k_x0, double k_xt, double k_eps,
         double k_noise, uintptr_t stream) {
        lrk::DiffusionCoef k{ax, ae, has_clip ? 1 : 0, clip, sqrt_acp, inv_sqrt_1m_acp, k_x0, k_xt, k_eps, k_noise};
        lrk::cuda_diffusion_step(t, n, P(x), P(eps), P(noise), W(out), k, W(stream));
      },
      nogil);
  m.def(
      "euler_step",
      [](int t, int64_t n, uintptr_t x, uintptr_t v, uintptr_t out, double dt, uintptr_t stream) {
        lrk::cuda_euler_step(t, n, P(x), P(v), W(out), dt, W(stream));
      },
      nogil);
  m.def(
      "heun_step",
      [](int t, int64_t n, uintptr_t x, uintptr_t v, uintptr_t vn, uintptr_t out, double dt, uintptr_t stream) {
        lrk::cuda_heun_step(t, n, P(x), P(v), P(vn), W(out), dt, W(stream));
      },
      nogil);
  m.def(
      "edm_euler_step",
      [](int t, int64_t n, uintptr_t x, uintptr_t den, uintptr_t ox, uintptr_t os, double sh, double sn,
         uintptr_t stream) { lrk::cuda_edm_euler_step(t, n, P(x), P(den), W(ox), W(os), sh, sn, W(stream)); },
      nogil);
  m.def(
      "edm_heun_step",
      [](int t, int64_t n, uintptr_t xh, uintptr_t s, uintptr_t dn, uintptr_t xn, uintptr_t out, double sh, double sn,
         uintptr_t stream) { lrk::cuda_edm_heun_step(t, n, P(xh), P(s), P(dn), P(xn), W(out), sh, sn, W(stream)); },
      nogil);
  m.def("build_info", &build_info);
}
