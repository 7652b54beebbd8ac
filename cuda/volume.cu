// Volume-rendering weights of packed rays: one thread per ray walks its samples in order (math in volume.h).
#include <cuda_runtime.h>

#include "text3d_kernels.h"
#include "volume.h"

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ bool in_range(int64_t start, int32_t count, int64_t n_samples) {
    return start >= 0 && count >= 0 && start + count <= n_samples;
}

__global__ void forward_kernel(const float* __restrict__ sigma, const float* __restrict__ delta, int64_t n_samples,
                               const int32_t* __restrict__ packed_info, int64_t n_rays, float* __restrict__ w,
                               float* __restrict__ trans) {
    const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (r >= n_rays) return;
    const int64_t start = packed_info[2 * r];
    const int32_t count = packed_info[2 * r + 1];
    if (!in_range(start, count, n_samples)) return;
    t3d_ray_forward(sigma + start, delta + start, count, w + start, trans + start);
}

__global__ void backward_kernel(const float* __restrict__ sigma, const float* __restrict__ delta, int64_t n_samples,
                                const int32_t* __restrict__ packed_info, int64_t n_rays, const float* __restrict__ w,
                                const float* __restrict__ trans, const float* __restrict__ grad_w,
                                float* __restrict__ grad_sigma, float* __restrict__ grad_delta) {
    const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (r >= n_rays) return;
    const int64_t start = packed_info[2 * r];
    const int32_t count = packed_info[2 * r + 1];
    if (!in_range(start, count, n_samples)) return;
    t3d_ray_backward(sigma + start, delta + start, w + start, trans + start, grad_w + start, count,
                     grad_sigma != nullptr ? grad_sigma + start : nullptr,
                     grad_delta != nullptr ? grad_delta + start : nullptr);
}

unsigned blocks(int64_t n_rays) { return (unsigned)((n_rays + kThreads - 1) / kThreads); }

}  // namespace

extern "C" int t3d_composite_forward(const float* sigma, const float* delta, int64_t n_samples,
                                     const int32_t* packed_info, int64_t n_rays, float* w, float* trans,
                                     void* stream) {
    if (n_rays < 0 || n_samples < 0) return T3D_BAD_ARGUMENT;
    if (n_rays == 0) return T3D_OK;
    forward_kernel<<<blocks(n_rays), kThreads, 0, (cudaStream_t)stream>>>(sigma, delta, n_samples, packed_info, n_rays,
                                                                           w, trans);
    return (int)cudaGetLastError();
}

extern "C" int t3d_composite_backward(const float* sigma, const float* delta, int64_t n_samples,
                                      const int32_t* packed_info, int64_t n_rays, const float* w, const float* trans,
                                      const float* grad_w, float* grad_sigma, float* grad_delta, void* stream) {
    if (n_rays < 0 || n_samples < 0) return T3D_BAD_ARGUMENT;
    if (n_rays == 0 || (grad_sigma == nullptr && grad_delta == nullptr)) return T3D_OK;
    backward_kernel<<<blocks(n_rays), kThreads, 0, (cudaStream_t)stream>>>(
        sigma, delta, n_samples, packed_info, n_rays, w, trans, grad_w, grad_sigma, grad_delta);
    return (int)cudaGetLastError();
}
