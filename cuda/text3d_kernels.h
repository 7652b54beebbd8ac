// The C ABI of text3d's CUDA kernels: raw device pointers, sizes and a cudaStream_t passed as void*. No torch types,
// so the .cu files build with nvcc alone; the torch binding (bindings.cpp) checks tensors and calls these.
// Every function launches asynchronously on `stream` and returns T3D_OK, T3D_BAD_ARGUMENT, or the cudaError_t of the
// launch. Table scalars are float32 (half = 0) or float16 (half = 1); every other buffer is float32.
#pragma once

#include <stdint.h>

#include "hashgrid.h"

#ifdef __cplusplus
extern "C" {
#endif

// out[N, L*F] (table dtype) = encoding of x[N, 3] with table[L*T, F].
int t3d_hashgrid_forward(const float* x, const void* table, int half, void* out, int64_t n, HashGridParams params,
                         void* stream);

// grad_out[N, L*F] (table dtype) -> grad_table32[L*T, F] (float32, accumulated: zero it first; may be null) and
// grad_x[N, 3] (float32, accumulated: zero it first; may be null).
int t3d_hashgrid_backward(const float* x, const void* table, int half, const void* grad_out, int64_t n,
                          HashGridParams params, float* grad_table32, float* grad_x, void* stream);

// Double backward (see hashgrid.h): g = grad_out[N, L*F] (table dtype), ggx[N, 3] (float32, may be null),
// ggt[L*T, F] (float32, may be null) -> dg[N, L*F] (float32, written), dtable32[L*T, F] (float32, accumulated; may be
// null), dx[N, 3] (float32, accumulated; may be null).
int t3d_hashgrid_double_backward(const float* x, const void* table, int half, const void* grad_out, const float* ggx,
                                 const float* ggt, int64_t n, HashGridParams params, float* dg, float* dtable32,
                                 float* dx, void* stream);

// Volume-rendering weights of packed rays: packed_info[R, 2] int32 = (first sample, sample count) per ray;
// sigma, delta [M] -> w, trans [M]. A ray whose samples do not lie within [0, M) is skipped (its outputs unwritten).
int t3d_composite_forward(const float* sigma, const float* delta, int64_t n_samples, const int32_t* packed_info,
                          int64_t n_rays, float* w, float* trans, void* stream);

// grad_w[M] -> grad_sigma[M], grad_delta[M] (each written, zero for skipped rays; may be null).
int t3d_composite_backward(const float* sigma, const float* delta, int64_t n_samples, const int32_t* packed_info,
                           int64_t n_rays, const float* w, const float* trans, const float* grad_w,
                           float* grad_sigma, float* grad_delta, void* stream);

#ifdef __cplusplus
}
#endif
