// text3d's kernels for the CPU: the hash-grid math of hashgrid.h compiled by g++ with OpenMP into a plain shared
// library (no torch headers, so it builds in seconds), called through ctypes by text3d/kernels/cpu.py.
// Results do not depend on the thread count: the forward gives each point to one thread, and the backward gives
// each level (a disjoint block of table rows) to one thread, which adds the points' gradients in order.
#include "hashgrid.h"

namespace {

template <int F>
void forward(const float* x, const float* table, float* out, int64_t n, const HashGridParams& p, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) {
        HashGridCorners c;
        for (int level = 0; level < p.n_levels; ++level) {
            t3d_hashgrid_corners(x + 3 * i, level, p, c);
            float acc[F];
            t3d_level_forward<F>(c, [&](uint32_t row, int f) { return table[(int64_t)row * F + f]; }, acc);
            float* o = out + (i * p.n_levels + level) * F;
            for (int f = 0; f < F; ++f) o[f] = acc[f];
        }
    }
}

template <int F>
void backward_table(const float* x, const float* grad_out, int64_t n, const HashGridParams& p, float* grad_table,
                    int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int level = 0; level < p.n_levels; ++level) {
        HashGridCorners c;
        for (int64_t i = 0; i < n; ++i) {
            t3d_hashgrid_corners(x + 3 * i, level, p, c);
            const float* g = grad_out + (i * p.n_levels + level) * F;
            t3d_level_backward<F>(
                c, g, [](uint32_t, int) { return 0.0f; },
                [&](uint32_t row, int f, float v) { grad_table[(int64_t)row * F + f] += v; }, true, false, nullptr);
        }
    }
}

}  // namespace

extern "C" {

// out: [n, L, F] = the encoding of x: [n, 3] with table: [L * T, F], all float32 and contiguous.
int t3d_cpu_hashgrid_forward(const float* x, const float* table, float* out, int64_t n, const HashGridParams* p,
                             int threads) {
    switch (p->features) {
        case 1: forward<1>(x, table, out, n, *p, threads); return T3D_OK;
        case 2: forward<2>(x, table, out, n, *p, threads); return T3D_OK;
        case 4: forward<4>(x, table, out, n, *p, threads); return T3D_OK;
        case 8: forward<8>(x, table, out, n, *p, threads); return T3D_OK;
        default: return T3D_BAD_ARGUMENT;
    }
}

// grad_table: [L * T, F] (zeroed by the caller) += the gradient of the encoding given grad_out: [n, L, F].
int t3d_cpu_hashgrid_backward_table(const float* x, const float* grad_out, int64_t n, const HashGridParams* p,
                                    float* grad_table, int threads) {
    switch (p->features) {
        case 1: backward_table<1>(x, grad_out, n, *p, grad_table, threads); return T3D_OK;
        case 2: backward_table<2>(x, grad_out, n, *p, grad_table, threads); return T3D_OK;
        case 4: backward_table<4>(x, grad_out, n, *p, grad_table, threads); return T3D_OK;
        case 8: backward_table<8>(x, grad_out, n, *p, grad_table, threads); return T3D_OK;
        default: return T3D_BAD_ARGUMENT;
    }
}

}  // extern "C"
