// Coefficients of the fused sampling updates. Python folds each schedule into these numbers
// (in float64) so one elementwise pass per step is enough; see reference/sampling.py for the spec.
#pragma once

namespace lrk {

// DDPM and DDIM in one form:
//   x0  = ax * x_t + ae * eps               (predicted clean sample)
//   if clip: x0 = clamp(x0, -clip, clip);  eps = (x_t - sqrt_acp * x0) * inv_sqrt_1m_acp
//   out = k_x0 * x0 + k_xt * x_t + k_eps * eps + k_noise * noise
struct DiffusionCoef {
  double ax, ae;
  int has_clip;
  double clip, sqrt_acp, inv_sqrt_1m_acp;
  double k_x0, k_xt, k_eps, k_noise;
};

}  // namespace lrk
