// The same kernels built for AVX2 + FMA + F16C (x86-64; chosen at run time when the CPU has them).
//
// Not compiled with -mavx2: that would also make this file's copies of shared inline and std::
// functions AVX2 code, and the linker may hand those copies to the portable build too (an illegal
// instruction on a CPU without AVX2). Instead every system and shared header is included first,
// with baseline code generation, and only the kernels below the pragma target AVX2.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"
#include "cpu_kernels.h"
#include "sampling.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define LRK_ISA avx2
#define LRK_F16C 1
#include "cpu_isa_conv.h"
#include "cpu_attention_impl.h"
#include "cpu_sampling_impl.h"
#pragma GCC pop_options

namespace lrk {
const CpuKernels& kernels_avx2() {
  static const CpuKernels k{avx2::attention, avx2::diffusion_step, avx2::euler_step,
                            avx2::heun_step, avx2::edm_euler_step, avx2::edm_heun_step};
  return k;
}
}  // namespace lrk
