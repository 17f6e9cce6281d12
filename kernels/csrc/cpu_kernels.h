// The CPU kernels of one instruction-set build, as a table of entry points (one table per
// translation unit: portable, and AVX2+FMA on x86-64; cpu_module.cpp picks one at run time).
#pragma once

#include <cstdint>

#include "common.h"
#include "sampling.h"

namespace lrk {

struct CpuKernels {
  int64_t (*attention)(const AttnArgs&);  // returns the (query tile, key tile) products computed
  void (*diffusion_step)(int, int64_t, const void*, const void*, const void*, void*, const DiffusionCoef&);
  void (*euler_step)(int, int64_t, const void*, const void*, void*, double);
  void (*heun_step)(int, int64_t, const void*, const void*, const void*, void*, double);
  void (*edm_euler_step)(int, int64_t, const void*, const void*, void*, void*, double, double);
  void (*edm_heun_step)(int, int64_t, const void*, const void*, const void*, const void*, void*, double, double);
};

const CpuKernels& kernels_generic();
#ifdef LRK_HAVE_AVX2
const CpuKernels& kernels_avx2();
#endif

}  // namespace lrk
