// Multiresolution hash-grid encoding (Instant-NGP): the per-(point, level) math shared by the CUDA kernels in
// hashgrid.cu and the host test harness. It reproduces text3d.field.hashgrid.HashGridEncoding.encode exactly:
//   - points x in [0, 1]^3 are clamped to the cube; level l has res_l cells per axis; pos = x * res_l;
//   - the lower corner is min(floor(pos), res_l - 1), so x == 1 falls in the last cell;
//   - a level whose (res_l + 1)^3 vertices fit in the table is indexed densely (x + side * (y + side * z));
//     finer levels use the XOR-of-primes hash masked to the table size (uint32 arithmetic, wrapping);
//   - table rows of level l start at l * table_size; corner c = x_bit + 2 y_bit + 4 z_bit;
//   - trilinear weight of corner c = (w_z * w_y) * w_x, the same product order as the torch encoding.
#pragma once

#include "common.h"

#define T3D_MAX_LEVELS 32
#define T3D_MAX_FEATURES 8

struct HashGridParams {
    int32_t n_levels;                       // L
    int32_t features;                       // F, features per level
    uint32_t table_size;                    // T, rows per level (a power of two)
    int32_t resolution[T3D_MAX_LEVELS];     // cells per axis of each level
};

// The 8 corners of one point's cell at one level: table rows, weights and (optionally) weight derivatives.
struct HashGridCorners {
    uint32_t row[8];
    float w[8];
    float dw[8][3];     // d w_c / d x_a (zero along an axis where x was clamped)
    float factor[3][2]; // per axis: the two 1-D weights (lower corner, upper corner)
    float slope[3];     // per axis: d frac / d x (= res, or 0 where x was clamped)
};

T3D_HD float t3d_clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

T3D_HD void t3d_hashgrid_corners(const float* x, int level, const HashGridParams& p, HashGridCorners& c) {
    const int res = p.resolution[level];
    const uint32_t side = (uint32_t)res + 1u;
    const bool dense = (uint64_t)side * side * side <= (uint64_t)p.table_size;
    uint32_t lo[3];
    T3D_UNROLL for (int a = 0; a < 3; ++a) {
        const float pos = t3d_clamp01(x[a]) * (float)res;
        float cell = floorf(pos);
        if (cell > (float)(res - 1)) cell = (float)(res - 1);
        const float frac = pos - cell;
        lo[a] = (uint32_t)cell;
        c.factor[a][0] = 1.0f - frac;
        c.factor[a][1] = frac;
        // torch's clamp passes the gradient on [0, 1] inclusive.
        c.slope[a] = (x[a] >= 0.0f && x[a] <= 1.0f) ? (float)res : 0.0f;
    }
    const uint32_t offset = (uint32_t)level * p.table_size;
    T3D_UNROLL for (int k = 0; k < 8; ++k) {
        const uint32_t bx = k & 1, by = (k >> 1) & 1, bz = (k >> 2) & 1;
        const uint32_t cx = lo[0] + bx, cy = lo[1] + by, cz = lo[2] + bz;
        uint32_t index;
        if (dense) {
            index = cx + side * (cy + side * cz);
        } else {
            index = (cx * 1u) ^ (cy * 2654435761u) ^ (cz * 805459861u);
            index &= p.table_size - 1u;
        }
        c.row[k] = offset + index;
        const float fx = c.factor[0][bx], fy = c.factor[1][by], fz = c.factor[2][bz];
        c.w[k] = (fz * fy) * fx;
        const float sx = bx ? 1.0f : -1.0f, sy = by ? 1.0f : -1.0f, sz = bz ? 1.0f : -1.0f;
        c.dw[k][0] = sx * c.slope[0] * (fz * fy);
        c.dw[k][1] = sy * c.slope[1] * (fz * fx);
        c.dw[k][2] = sz * c.slope[2] * (fy * fx);
    }
}

// d^2 w_k / (d x_a d x_b) for a != b: the product of both slopes and signs with the third axis' weight.
T3D_HD float t3d_hashgrid_d2w(const HashGridCorners& c, int k, int a, int b) {
    const int bits[3] = {k & 1, (k >> 1) & 1, (k >> 2) & 1};
    const int third = 3 - a - b;
    const float sa = bits[a] ? 1.0f : -1.0f, sb = bits[b] ? 1.0f : -1.0f;
    return sa * sb * c.slope[a] * c.slope[b] * c.factor[third][bits[third]];
}

// Forward of one (point, level): out[f] = sum_k w_k * table[row_k, f]. Table entries are read through `load`.
template <int F, typename Load>
T3D_HD void t3d_level_forward(const HashGridCorners& c, Load load, float* out) {
    T3D_UNROLL for (int f = 0; f < F; ++f) out[f] = 0.0f;
    T3D_UNROLL for (int k = 0; k < 8; ++k)
        T3D_UNROLL for (int f = 0; f < F; ++f) out[f] += c.w[k] * load(c.row[k], f);
}

// Backward of one (point, level) given g[f] = dL/d out[n, level, f]:
//   grad_table[row_k, f] += w_k g[f]            (through `add_table`, an atomic add on the GPU)
//   grad_x[a]            += sum_k,f g[f] table[row_k, f] dw_k/dx_a
template <int F, typename Load, typename AddTable>
T3D_HD void t3d_level_backward(const HashGridCorners& c, const float* g, Load load, AddTable add_table,
                               bool want_table, bool want_x, float* grad_x) {
    T3D_UNROLL for (int k = 0; k < 8; ++k) {
        float dot = 0.0f;
        T3D_UNROLL for (int f = 0; f < F; ++f) {
            if (want_table) add_table(c.row[k], f, c.w[k] * g[f]);
            if (want_x) dot += g[f] * load(c.row[k], f);
        }
        if (want_x)
            T3D_UNROLL for (int a = 0; a < 3; ++a) grad_x[a] += dot * c.dw[k][a];
    }
}

// Double backward of one (point, level), F features. The backward maps (g, x, table) to (grad_x, grad_table); given the
// upstream gradients ggx[3] (of grad_x) and ggt (of grad_table, read through `load_ggt`, may be absent):
//   dg[f]             = sum_k ggt[row_k, f] w_k + sum_k table[row_k, f] sum_a ggx[a] dw_k/dx_a
//   dtable[row_k, f] += g[f] sum_a ggx[a] dw_k/dx_a
//   dx[b]            += sum_k,f g[f] (ggt[row_k, f] dw_k/dx_b + table[row_k, f] sum_{a != b} ggx[a] d2w_k/dx_a dx_b)
template <int F, typename Load, typename LoadG, typename AddTable>
T3D_HD void t3d_level_double_backward(const HashGridCorners& c, const float* g, const float* ggx, bool has_ggt,
                                      Load load, LoadG load_ggt, AddTable add_table, float* dg, bool want_table,
                                      bool want_x, float* dx) {
    T3D_UNROLL for (int f = 0; f < F; ++f) dg[f] = 0.0f;
    T3D_UNROLL for (int k = 0; k < 8; ++k) {
        float along = 0.0f;  // sum_a ggx[a] dw_k/dx_a
        if (ggx != nullptr)
            T3D_UNROLL for (int a = 0; a < 3; ++a) along += ggx[a] * c.dw[k][a];
        float mixed[3] = {0.0f, 0.0f, 0.0f};  // sum_{a != b} ggx[a] d2w_k/(dx_a dx_b), per b
        if (want_x && ggx != nullptr)
            T3D_UNROLL for (int b = 0; b < 3; ++b)
                T3D_UNROLL for (int a = 0; a < 3; ++a)
                    if (a != b) mixed[b] += ggx[a] * t3d_hashgrid_d2w(c, k, a, b);
        T3D_UNROLL for (int f = 0; f < F; ++f) {
            const float t = load(c.row[k], f);
            const float gg = has_ggt ? load_ggt(c.row[k], f) : 0.0f;
            dg[f] += gg * c.w[k] + t * along;
            if (want_table && ggx != nullptr) add_table(c.row[k], f, g[f] * along);
            if (want_x)
                for (int b = 0; b < 3; ++b) dx[b] += g[f] * (gg * c.dw[k][b] + t * mixed[b]);
        }
    }
}
