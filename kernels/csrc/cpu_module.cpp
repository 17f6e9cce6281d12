// Python bindings of the CPU backend. Arrays cross as raw addresses plus shapes and element
// strides (the Python side validates them), so this module needs neither torch nor numpy.
#include <omp.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu_kernels.h"

namespace py = pybind11;
using Strides = std::array<int64_t, 4>;

namespace {

const lrk::CpuKernels* g_k = &lrk::kernels_generic();
std::string g_isa = "generic";
std::atomic<int> g_threads{0};  // set_num_threads(); 0 = OpenMP's default (OMP_NUM_THREADS)

bool cpu_has_avx2() {
#if defined(LRK_HAVE_AVX2)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

void set_isa(const std::string& name) {
  if (name == "generic") {
    g_k = &lrk::kernels_generic();
#ifdef LRK_HAVE_AVX2
  } else if (name == "avx2") {
    if (!cpu_has_avx2()) throw py::value_error("this CPU lacks AVX2/FMA; use isa 'generic'");
    g_k = &lrk::kernels_avx2();
#endif
  } else {
    throw py::value_error("unknown or unbuilt CPU kernel variant '" + name + "'; see build_info()['isa_built']");
  }
  g_isa = name;
}

const void* P(uintptr_t p) { return reinterpret_cast<const void*>(p); }

void copy4(int64_t* dst, const Strides& s) { std::memcpy(dst, s.data(), 4 * sizeof(int64_t)); }

// Returns the number of (query tile, key tile) products computed; fully masked tiles are skipped.
int64_t attention(int dtype, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t D, uintptr_t q, Strides qs,
               uintptr_t k0, Strides ks0, uintptr_t v0, Strides vs0, int64_t L0, uintptr_t k1, Strides ks1,
               uintptr_t v1, Strides vs1, int64_t L1, uintptr_t out, Strides os, double scale, bool causal,
               int64_t window, int64_t q_offset, uintptr_t q_blocks, int64_t qb_bstride, uintptr_t kv_blocks,
               int64_t kvb_bstride, uintptr_t pad, int64_t pad_len, int64_t pad_bstride, int threads) {
  lrk::AttnArgs a{};
  a.dtype = dtype;
  a.B = B, a.Hq = Hq, a.Hkv = Hkv, a.Lq = Lq, a.D = D;
  a.q = P(q);
  copy4(a.qs, qs);
  a.k[0] = P(k0), a.v[0] = P(v0), a.k[1] = P(k1), a.v[1] = P(v1);
  copy4(a.ks[0], ks0), copy4(a.vs[0], vs0), copy4(a.ks[1], ks1), copy4(a.vs[1], vs1);
  a.seg_len[0] = L0, a.seg_len[1] = L1;
  a.out = reinterpret_cast<void*>(out);
  copy4(a.os, os);
  a.scale = float(scale);
  a.causal = causal ? 1 : 0;
  a.window = window, a.q_offset = q_offset;
  a.q_blocks = static_cast<const int32_t*>(P(q_blocks)), a.qb_bstride = qb_bstride;
  a.kv_blocks = static_cast<const int32_t*>(P(kv_blocks)), a.kvb_bstride = kvb_bstride;
  a.pad = static_cast<const uint8_t*>(P(pad)), a.pad_len = pad_len, a.pad_bstride = pad_bstride;
  a.threads = threads > 0 ? threads : g_threads.load();
  return g_k->attention(a);
}

void diffusion_step(int dtype, int64_t n, uintptr_t x, uintptr_t eps, uintptr_t noise, uintptr_t out, double ax,
                    double ae, bool has_clip, double clip, double sqrt_acp, double inv_sqrt_1m_acp, double k_x0,
                    double k_xt, double k_eps, double k_noise) {
  lrk::DiffusionCoef k{ax, ae, has_clip ? 1 : 0, clip, sqrt_acp, inv_sqrt_1m_acp, k_x0, k_xt, k_eps, k_noise};
  g_k->diffusion_step(dtype, n, P(x), P(eps), P(noise), reinterpret_cast<void*>(out), k);
}

py::dict build_info() {
  py::dict d;
  d["version"] = LRK_VERSION;
  d["compiler"] = LRK_COMPILER;
  d["build_type"] = LRK_BUILD_TYPE;
  d["cxx_flags"] = LRK_CXX_FLAGS;
  d["openmp"] = std::to_string(_OPENMP);  // yyyymm of the OpenMP spec the compiler implements
  py::list isa;
  isa.append("generic");
#ifdef LRK_HAVE_AVX2
  isa.append("avx2");
#endif
  d["isa_built"] = isa;
  d["isa_selected"] = g_isa;
  d["cpu_has_avx2_fma"] = cpu_has_avx2();
  d["max_threads"] = g_threads.load() > 0 ? g_threads.load() : omp_get_max_threads();
  return d;
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "librobot-kernels CPU backend (C++/OpenMP); called through librobot.kernels, not directly.";
  // Pick the fastest variant this CPU runs; LIBROBOT_KERNELS_CPU_ISA=generic forces the portable one.
  const char* forced = std::getenv("LIBROBOT_KERNELS_CPU_ISA");
  if (forced && *forced) set_isa(forced);
  else if (cpu_has_avx2()) set_isa("avx2");

  auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("attention", &attention, nogil);
  m.def("diffusion_step", &diffusion_step, nogil);
  m.def(
      "euler_step",
      [](int t, int64_t n, uintptr_t x, uintptr_t v, uintptr_t out, double dt) {
        g_k->euler_step(t, n, P(x), P(v), reinterpret_cast<void*>(out), dt);
      },
      nogil);
  m.def(
      "heun_step",
      [](int t, int64_t n, uintptr_t x, uintptr_t v, uintptr_t vn, uintptr_t out, double dt) {
        g_k->heun_step(t, n, P(x), P(v), P(vn), reinterpret_cast<void*>(out), dt);
      },
      nogil);
  m.def(
      "edm_euler_step",
      [](int t, int64_t n, uintptr_t x, uintptr_t den, uintptr_t ox, uintptr_t os, double sh, double sn) {
        g_k->edm_euler_step(t, n, P(x), P(den), reinterpret_cast<void*>(ox), reinterpret_cast<void*>(os), sh,
                                sn);
      },
      nogil);
  m.def(
      "edm_heun_step",
      [](int t, int64_t n, uintptr_t xh, uintptr_t s, uintptr_t dn, uintptr_t xn, uintptr_t out, double sh,
         double sn) { g_k->edm_heun_step(t, n, P(xh), P(s), P(dn), P(xn), reinterpret_cast<void*>(out), sh, sn); },
      nogil);
  m.def("set_isa", &set_isa, "Select the kernel variant ('generic' or 'avx2').");
  // A process-wide setting (omp_set_num_threads would only affect the calling Python thread).
  m.def("set_num_threads", [](int n) { g_threads.store(n > 0 ? n : 0); });
  m.def("get_num_threads", []() { int n = g_threads.load(); return n > 0 ? n : omp_get_max_threads(); });
  m.def("build_info", &build_info);
}
