// Host-side entry points of the CUDA backend (defined in the .cu files). Each launches on the
// given stream (torch's current stream, so the calls can be captured in a CUDA graph) and throws
// std::runtime_error with CUDA's message when a launch fails.
#pragma once

#include <cstdint>

#include "common.h"
#include "sampling.h"

namespace lrk {
void cuda_attention(const AttnArgs& a, void* stream);
void cuda_diffusion_step(int dtype, int64_t n, const void* x, const void* eps, const void* noise, void* out,
                         const DiffusionCoef& k, void* stream);
void cuda_euler_step(int dtype, int64_t n, const void* x, const void* v, void* out, double dt, void* stream);
void cuda_heun_step(int dtype, int64_t n, const void* x, const void* v, const void* vn, void* out, double dt,
                    void* stream);
void cuda_edm_euler_step(int dtype, int64_t n, const void* x, const void* den, void* out_x, void* out_slope,
                         double sigma_hat, double sigma_next, void* stream);
void cuda_edm_heun_step(int dtype, int64_t n, const void* x_hat, const void* slope, const void* den_next,
                        const void* x_next, void* out, double sigma_hat, double sigma_next, void* stream);
}  // namespace lrk
