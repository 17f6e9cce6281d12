// Portable build of the CPU kernels (SSE2 on x86-64, NEON on aarch64).
#include "cpu_kernels.h"

#define LRK_ISA generic
#include "cpu_isa_conv.h"
#include "cpu_attention_impl.h"
#include "cpu_sampling_impl.h"

namespace lrk {
const CpuKernels& kernels_generic() {
  static const CpuKernels k{generic::attention,  generic::diffusion_step, generic::euler_step,
                            generic::heun_step,  generic::edm_euler_step, generic::edm_heun_step};
  return k;
}
}  // namespace lrk
