// Volume-rendering weights along packed rays (the op nerfacc calls render_weight_from_density): the per-ray math
// shared by the CUDA kernels in volume.cu and the host test harness. For the samples i of one ray, in order,
//   s_i = sigma_i * delta_i,   T_i = exp(-sum_{j<i} s_j),   alpha_i = 1 - exp(-s_i),   w_i = alpha_i * T_i.
// The backward of L(w) with g_i = dL/dw_i:
//   dL/ds_k = g_k * T_k * exp(-s_k) - sum_{i>k} g_i w_i,   dL/dsigma_k = delta_k dL/ds_k,   dL/ddelta_k = sigma_k dL/ds_k.
#pragma once

#include "common.h"

// Forward over one ray's samples [0, count): writes w and the transmittance T (kept for the backward).
T3D_HD void t3d_ray_forward(const float* sigma, const float* delta, int count, float* w, float* trans) {
    float tau = 0.0f;  // optical depth before sample i
    for (int i = 0; i < count; ++i) {
        const float s = sigma[i] * delta[i];
        const float t = expf(-tau);
        trans[i] = t;
        w[i] = -expm1f(-s) * t;
        tau += s;
    }
}

// Backward over one ray's samples; grad_sigma / grad_delta may be null when not wanted.
T3D_HD void t3d_ray_backward(const float* sigma, const float* delta, const float* w, const float* trans,
                                   const float* g, int count, float* grad_sigma, float* grad_delta) {
    float later = 0.0f;  // sum_{i>k} g_i w_i
    for (int k = count - 1; k >= 0; --k) {
        const float s = sigma[k] * delta[k];
        const float ds = g[k] * trans[k] * expf(-s) - later;
        if (grad_sigma != nullptr) grad_sigma[k] = delta[k] * ds;
        if (grad_delta != nullptr) grad_delta[k] = sigma[k] * ds;
        later += g[k] * w[k];
    }
}
