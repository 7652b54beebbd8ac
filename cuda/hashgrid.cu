// Hash-grid encoding kernels: one thread per (point, level), the math in hashgrid.h.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "hashgrid.h"
#include "text3d_kernels.h"

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }

__device__ __forceinline__ void load_point(const float* x, int64_t point, float* out) {
    out[0] = x[point * 3 + 0];
    out[1] = x[point * 3 + 1];
    out[2] = x[point * 3 + 2];
}

// The cell corners of thread i = (point, level) = (i / L, i % L).
__device__ __forceinline__ void corners_of(const float* x, int64_t i, const HashGridParams& p, HashGridCorners& c) {
    float xp[3];
    load_point(x, i / p.n_levels, xp);
    t3d_hashgrid_corners(xp, (int)(i % p.n_levels), p, c);
}

template <int F, typename scalar_t>
__device__ __forceinline__ void load_features(const scalar_t* values, int64_t i, float* out) {
    T3D_UNROLL for (int f = 0; f < F; ++f) out[f] = to_float(values[i * F + f]);
}

template <typename scalar_t, int F>
__global__ void forward_kernel(const float* __restrict__ x, const scalar_t* __restrict__ table,
                               scalar_t* __restrict__ out, int64_t n, HashGridParams p) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n * p.n_levels) return;
    HashGridCorners c;
    corners_of(x, i, p, c);
    float acc[F];
    t3d_level_forward<F>(c, [&](uint32_t row, int f) { return to_float(table[(int64_t)row * F + f]); }, acc);
    T3D_UNROLL for (int f = 0; f < F; ++f) out[i * F + f] = from_float<scalar_t>(acc[f]);
}

template <typename scalar_t, int F>
__global__ void backward_kernel(const float* __restrict__ x, const scalar_t* __restrict__ table,
                                const scalar_t* __restrict__ grad_out, int64_t n, HashGridParams p,
                                float* __restrict__ grad_table, float* __restrict__ grad_x) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n * p.n_levels) return;
    const int64_t point = i / p.n_levels;
    HashGridCorners c;
    corners_of(x, i, p, c);
    float g[F];
    load_features<F>(grad_out, i, g);
    float gx[3] = {0.0f, 0.0f, 0.0f};
    t3d_level_backward<F>(
        c, g, [&](uint32_t row, int f) { return to_float(table[(int64_t)row * F + f]); },
        [&](uint32_t row, int f, float v) { atomicAdd(grad_table + (int64_t)row * F + f, v); },
        grad_table != nullptr, grad_x != nullptr, gx);
    if (grad_x != nullptr)
        T3D_UNROLL for (int a = 0; a < 3; ++a) atomicAdd(grad_x + point * 3 + a, gx[a]);
}

template <typename scalar_t, int F>
__global__ void double_backward_kernel(const float* __restrict__ x, const scalar_t* __restrict__ table,
                                       const scalar_t* __restrict__ grad_out, const float* __restrict__ ggx,
                                       const float* __restrict__ ggt, int64_t n, HashGridParams p,
                                       float* __restrict__ dg, float* __restrict__ dtable, float* __restrict__ dx) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n * p.n_levels) return;
    const int64_t point = i / p.n_levels;
    HashGridCorners c;
    corners_of(x, i, p, c);
    float g[F];
    load_features<F>(grad_out, i, g);
    float ggx_p[3];
    if (ggx != nullptr) load_point(ggx, point, ggx_p);
    float dg_l[F];
    float dx_l[3] = {0.0f, 0.0f, 0.0f};
    t3d_level_double_backward<F>(
        c, g, ggx != nullptr ? ggx_p : nullptr, ggt != nullptr,
        [&](uint32_t row, int f) { return to_float(table[(int64_t)row * F + f]); },
        [&](uint32_t row, int f) { return ggt[(int64_t)row * F + f]; },
        [&](uint32_t row, int f, float v) { atomicAdd(dtable + (int64_t)row * F + f, v); }, dg_l,
        dtable != nullptr, dx != nullptr, dx_l);
    T3D_UNROLL for (int f = 0; f < F; ++f) dg[i * F + f] = dg_l[f];
    if (dx != nullptr)
        T3D_UNROLL for (int a = 0; a < 3; ++a) atomicAdd(dx + point * 3 + a, dx_l[a]);
}

bool valid(const HashGridParams& p) {
    const bool pow2 = p.table_size > 0 && (p.table_size & (p.table_size - 1)) == 0;
    const bool features = p.features == 1 || p.features == 2 || p.features == 4 || p.features == 8;
    if (!pow2 || !features || p.n_levels < 1 || p.n_levels > T3D_MAX_LEVELS) return false;
    if ((uint64_t)p.n_levels * p.table_size > (1ull << 31)) return false;  // rows are indexed with uint32
    for (int l = 0; l < p.n_levels; ++l)
        if (p.resolution[l] < 1) return false;
    return true;
}

unsigned blocks(int64_t n, const HashGridParams& p) { return (unsigned)((n * p.n_levels + kThreads - 1) / kThreads); }

// Runs the statement with `T` (the table's scalar type) and `F` (features per level) bound to the runtime values.
#define T3D_FEATURES_CASE(FEATURES, ...)     \
    case FEATURES: {                         \
        constexpr int F = FEATURES;          \
        if (half) {                          \
            using T = __half;                \
            __VA_ARGS__;                     \
        } else {                             \
            using T = float;                 \
            __VA_ARGS__;                     \
        }                                    \
        break;                               \
    }
#define T3D_DISPATCH(...)                            \
    switch (p.features) {                            \
        T3D_FEATURES_CASE(1, __VA_ARGS__)            \
        T3D_FEATURES_CASE(2, __VA_ARGS__)            \
        T3D_FEATURES_CASE(4, __VA_ARGS__)            \
        T3D_FEATURES_CASE(8, __VA_ARGS__)            \
        default:                                     \
            return T3D_BAD_ARGUMENT;                 \
    }                                                \
    return (int)cudaGetLastError();

}  // namespace

extern "C" int t3d_hashgrid_forward(const float* x, const void* table, int half, void* out, int64_t n,
                                    HashGridParams p, void* stream) {
    if (!valid(p) || n < 0) return T3D_BAD_ARGUMENT;
    if (n == 0) return T3D_OK;
    auto s = (cudaStream_t)stream;
    T3D_DISPATCH(forward_kernel<T, F><<<blocks(n, p), kThreads, 0, s>>>(x, (const T*)table, (T*)out, n, p))
}

extern "C" int t3d_hashgrid_backward(const float* x, const void* table, int half, const void* grad_out, int64_t n,
                                     HashGridParams p, float* grad_table32, float* grad_x, void* stream) {
    if (!valid(p) || n < 0) return T3D_BAD_ARGUMENT;
    if (n == 0 || (grad_table32 == nullptr && grad_x == nullptr)) return T3D_OK;
    auto s = (cudaStream_t)stream;
    T3D_DISPATCH(backward_kernel<T, F><<<blocks(n, p), kThreads, 0, s>>>(x, (const T*)table, (const T*)grad_out, n,
                                                                         p, grad_table32, grad_x))
}

extern "C" int t3d_hashgrid_double_backward(const float* x, const void* table, int half, const void* grad_out,
                                            const float* ggx, const float* ggt, int64_t n, HashGridParams p,
                                            float* dg, float* dtable32, float* dx, void* stream) {
    if (!valid(p) || n < 0 || dg == nullptr) return T3D_BAD_ARGUMENT;
    if (n == 0) return T3D_OK;
    auto s = (cudaStream_t)stream;
    T3D_DISPATCH(double_backward_kernel<T, F><<<blocks(n, p), kThreads, 0, s>>>(
        x, (const T*)table, (const T*)grad_out, ggx, ggt, n, p, dg, dtable32, dx))
}
