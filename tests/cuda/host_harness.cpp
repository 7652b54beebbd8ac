// The math of cuda/hashgrid.h and cuda/volume.h compiled for the CPU: the same per-(point, level) and per-ray
// functions the kernels call, driven by plain loops instead of a launch, with float32 tables and plain adds for the
// atomics. tests/test_cuda_kernels.py builds this with g++ and compares it with the torch twins, so the kernels'
// indexing, hashing, weights and gradients are checked on machines without a GPU. Its functions take the
// arguments of the kernels' C ABI (cuda/text3d_kernels.h), with null for an output that is not wanted.
#include <stdint.h>

#include "hashgrid.h"
#include "volume.h"

namespace {

template <int F>
void encode(const float* x, const float* table, float* out, int64_t n, const HashGridParams& p) {
    for (int64_t i = 0; i < n * p.n_levels; ++i) {
        HashGridCorners c;
        t3d_hashgrid_corners(x + (i / p.n_levels) * 3, (int)(i % p.n_levels), p, c);
        t3d_level_forward<F>(c, [&](uint32_t row, int f) { return table[(int64_t)row * F + f]; }, out + i * F);
    }
}

template <int F>
void backward(const float* x, const float* table, const float* grad_out, int64_t n, const HashGridParams& p,
              float* grad_table, float* grad_x) {
    for (int64_t i = 0; i < n * p.n_levels; ++i) {
        HashGridCorners c;
        t3d_hashgrid_corners(x + (i / p.n_levels) * 3, (int)(i % p.n_levels), p, c);
        float gx[3] = {0.0f, 0.0f, 0.0f};
        t3d_level_backward<F>(
            c, grad_out + i * F, [&](uint32_t row, int f) { return table[(int64_t)row * F + f]; },
            [&](uint32_t row, int f, float v) { grad_table[(int64_t)row * F + f] += v; }, grad_table != nullptr,
            grad_x != nullptr, gx);
        if (grad_x != nullptr)
            for (int a = 0; a < 3; ++a) grad_x[(i / p.n_levels) * 3 + a] += gx[a];
    }
}

template <int F>
void double_backward(const float* x, const float* table, const float* grad_out, const float* ggx, const float* ggt,
                     int64_t n, const HashGridParams& p, float* dg, float* dtable, float* dx) {
    for (int64_t i = 0; i < n * p.n_levels; ++i) {
        const int64_t point = i / p.n_levels;
        HashGridCorners c;
        t3d_hashgrid_corners(x + point * 3, (int)(i % p.n_levels), p, c);
        float dx_l[3] = {0.0f, 0.0f, 0.0f};
        t3d_level_double_backward<F>(
            c, grad_out + i * F, ggx != nullptr ? ggx + point * 3 : nullptr, ggt != nullptr,
            [&](uint32_t row, int f) { return table[(int64_t)row * F + f]; },
            [&](uint32_t row, int f) { return ggt[(int64_t)row * F + f]; },
            [&](uint32_t row, int f, float v) { dtable[(int64_t)row * F + f] += v; }, dg + i * F,
            dtable != nullptr, dx != nullptr, dx_l);
        if (dx != nullptr)
            for (int a = 0; a < 3; ++a) dx[point * 3 + a] += dx_l[a];
    }
}

HashGridParams params(int n_levels, int features, uint32_t table_size, const int32_t* resolution) {
    HashGridParams p{};
    p.n_levels = n_levels;
    p.features = features;
    p.table_size = table_size;
    for (int l = 0; l < n_levels; ++l) p.resolution[l] = resolution[l];
    return p;
}

}  // namespace

#define HARNESS_DISPATCH(CALL)           \
    switch (features) {                  \
        case 1: CALL(1); return 0;       \
        case 2: CALL(2); return 0;       \
        case 4: CALL(4); return 0;       \
        case 8: CALL(8); return 0;       \
        default: return -1;              \
    }

extern "C" {

int host_hashgrid_forward(const float* x, const float* table, float* out, int64_t n, int n_levels, int features,
                          uint32_t table_size, const int32_t* resolution) {
    const HashGridParams p = params(n_levels, features, table_size, resolution);
#define CALL(F) encode<F>(x, table, out, n, p)
    HARNESS_DISPATCH(CALL)
#undef CALL
}

int host_hashgrid_backward(const float* x, const float* table, const float* grad_out, int64_t n, int n_levels,
                           int features, uint32_t table_size, const int32_t* resolution, float* grad_table,
                           float* grad_x) {
    const HashGridParams p = params(n_levels, features, table_size, resolution);
#define CALL(F) backward<F>(x, table, grad_out, n, p, grad_table, grad_x)
    HARNESS_DISPATCH(CALL)
#undef CALL
}

int host_hashgrid_double_backward(const float* x, const float* table, const float* grad_out, const float* ggx,
                                  const float* ggt, int64_t n, int n_levels, int features, uint32_t table_size,
                                  const int32_t* resolution, float* dg, float* dtable, float* dx) {
    const HashGridParams p = params(n_levels, features, table_size, resolution);
#define CALL(F) double_backward<F>(x, table, grad_out, ggx, ggt, n, p, dg, dtable, dx)
    HARNESS_DISPATCH(CALL)
#undef CALL
}

void host_composite_forward(const float* sigma, const float* delta, const int32_t* packed_info, int64_t n_rays,
                            float* w, float* trans) {
    for (int64_t r = 0; r < n_rays; ++r) {
        const int64_t s = packed_info[2 * r];
        t3d_ray_forward(sigma + s, delta + s, packed_info[2 * r + 1], w + s, trans + s);
    }
}

void host_composite_backward(const float* sigma, const float* delta, const int32_t* packed_info, int64_t n_rays,
                             const float* w, const float* trans, const float* grad_w, float* grad_sigma,
                             float* grad_delta) {
    for (int64_t r = 0; r < n_rays; ++r) {
        const int64_t s = packed_info[2 * r];
        t3d_ray_backward(sigma + s, delta + s, w + s, trans + s, grad_w + s, packed_info[2 * r + 1],
                         grad_sigma != nullptr ? grad_sigma + s : nullptr,
                         grad_delta != nullptr ? grad_delta + s : nullptr);
    }
}

}  // extern "C"
