// Torch binding of text3d's CUDA kernels: checks tensors, allocates outputs, and calls the C ABI of
// text3d_kernels.h on the tensors' device and current stream. The Python side (text3d/kernels/) validates
// arguments with friendly messages and wraps these in autograd Functions; the checks here guard the raw pointers.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/extension.h>

#include <string>
#include <tuple>
#include <vector>

#include "text3d_kernels.h"

// A prebuilt extension (setup.py) records the hash of the sources it was built from; a JIT build needs none.
#ifndef T3D_SOURCES_HASH
#define T3D_SOURCES_HASH ""
#endif

namespace {

void check(const torch::Tensor& t, const char* name, torch::ScalarType dtype, int64_t dim) {
    TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
    TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", c10::toString(dtype), ", got ", t.scalar_type());
    TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions, got ", t.dim());
}

void check_launch(int rc, const char* what) {
    TORCH_CHECK(rc != T3D_BAD_ARGUMENT, "text3d cuda: ", what, ": invalid arguments");
    TORCH_CHECK(rc == T3D_OK, "text3d cuda: ", what, " failed: ", cudaGetErrorString((cudaError_t)rc));
}

HashGridParams grid_params(const torch::Tensor& table, const std::vector<int64_t>& resolutions, int64_t table_size) {
    TORCH_CHECK(!resolutions.empty() && resolutions.size() <= T3D_MAX_LEVELS, "1 to ", T3D_MAX_LEVELS, " levels");
    TORCH_CHECK(table.size(0) == (int64_t)resolutions.size() * table_size, "table must have levels * table_size rows");
    HashGridParams p{};
    p.n_levels = (int32_t)resolutions.size();
    p.features = (int32_t)table.size(1);
    p.table_size = (uint32_t)table_size;
    for (size_t l = 0; l < resolutions.size(); ++l) p.resolution[l] = (int32_t)resolutions[l];
    return p;
}

void check_table(const torch::Tensor& table) {
    TORCH_CHECK(table.scalar_type() == torch::kFloat32 || table.scalar_type() == torch::kFloat16,
                "table must be float32 or float16");
    check(table, "table", table.scalar_type(), 2);
}

void* stream_of(const torch::Tensor& t) { return (void*)c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

const float* optional_ptr(const c10::optional<torch::Tensor>& t, const char* name, int64_t dim) {
    if (!t.has_value()) return nullptr;
    check(*t, name, torch::kFloat32, dim);
    return t->data_ptr<float>();
}

torch::Tensor hashgrid_forward(torch::Tensor x, torch::Tensor table, std::vector<int64_t> resolutions,
                               int64_t table_size) {
    check(x, "x", torch::kFloat32, 2);
    check_table(table);
    c10::cuda::CUDAGuard guard(x.device());
    const HashGridParams p = grid_params(table, resolutions, table_size);
    auto out = torch::empty({x.size(0), p.n_levels * p.features}, table.options());
    check_launch(t3d_hashgrid_forward(x.data_ptr<float>(), table.data_ptr(), table.scalar_type() == torch::kFloat16,
                                      out.data_ptr(), x.size(0), p, stream_of(x)),
                 "hash-grid forward");
    return out;
}

std::tuple<torch::Tensor, torch::Tensor> hashgrid_backward(torch::Tensor x, torch::Tensor table,
                                                           torch::Tensor grad_out, std::vector<int64_t> resolutions,
                                                           int64_t table_size, bool want_table, bool want_x) {
    check(x, "x", torch::kFloat32, 2);
    check_table(table);
    check(grad_out, "grad_out", table.scalar_type(), 2);
    c10::cuda::CUDAGuard guard(x.device());
    const HashGridParams p = grid_params(table, resolutions, table_size);
    auto f32 = x.options().dtype(torch::kFloat32);
    // Gradients accumulate in float32 (atomics), whatever the table's dtype.
    auto grad_table = want_table ? torch::zeros(table.sizes(), f32) : torch::Tensor();
    auto grad_x = want_x ? torch::zeros({x.size(0), 3}, f32) : torch::Tensor();
    check_launch(t3d_hashgrid_backward(x.data_ptr<float>(), table.data_ptr(), table.scalar_type() == torch::kFloat16,
                                       grad_out.data_ptr(), x.size(0), p,
                                       want_table ? grad_table.data_ptr<float>() : nullptr,
                                       want_x ? grad_x.data_ptr<float>() : nullptr, stream_of(x)),
                 "hash-grid backward");
    return {grad_table, grad_x};
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> hashgrid_double_backward(
    torch::Tensor x, torch::Tensor table, torch::Tensor grad_out, c10::optional<torch::Tensor> ggx,
    c10::optional<torch::Tensor> ggt, std::vector<int64_t> resolutions, int64_t table_size, bool want_table,
    bool want_x) {
    check(x, "x", torch::kFloat32, 2);
    check_table(table);
    check(grad_out, "grad_out", table.scalar_type(), 2);
    c10::cuda::CUDAGuard guard(x.device());
    const HashGridParams p = grid_params(table, resolutions, table_size);
    const float* ggx_ptr = optional_ptr(ggx, "ggx", 2);
    const float* ggt_ptr = optional_ptr(ggt, "ggt", 2);
    auto f32 = x.options().dtype(torch::kFloat32);
    auto dg = torch::empty(grad_out.sizes(), f32);
    auto dtable = want_table ? torch::zeros(table.sizes(), f32) : torch::Tensor();
    auto dx = want_x ? torch::zeros({x.size(0), 3}, f32) : torch::Tensor();
    check_launch(t3d_hashgrid_double_backward(
                     x.data_ptr<float>(), table.data_ptr(), table.scalar_type() == torch::kFloat16,
                     grad_out.data_ptr(), ggx_ptr, ggt_ptr, x.size(0), p, dg.data_ptr<float>(),
                     want_table ? dtable.data_ptr<float>() : nullptr, want_x ? dx.data_ptr<float>() : nullptr,
                     stream_of(x)),
                 "hash-grid double backward");
    return {dg, dtable, dx};
}

std::tuple<torch::Tensor, torch::Tensor> composite_forward(torch::Tensor sigma, torch::Tensor delta,
                                                           torch::Tensor packed_info) {
    check(sigma, "sigmas", torch::kFloat32, 1);
    check(delta, "deltas", torch::kFloat32, 1);
    check(packed_info, "packed_info", torch::kInt32, 2);
    c10::cuda::CUDAGuard guard(sigma.device());
    TORCH_CHECK(delta.numel() == sigma.numel(), "deltas must match sigmas");
    TORCH_CHECK(packed_info.size(1) == 2, "packed_info must be [R, 2]");
    auto w = torch::zeros_like(sigma);
    auto trans = torch::zeros_like(sigma);
    check_launch(t3d_composite_forward(sigma.data_ptr<float>(), delta.data_ptr<float>(), sigma.numel(),
                                       packed_info.data_ptr<int32_t>(), packed_info.size(0), w.data_ptr<float>(),
                                       trans.data_ptr<float>(), stream_of(sigma)),
                 "compositing forward");
    return {w, trans};
}

std::tuple<torch::Tensor, torch::Tensor> composite_backward(torch::Tensor sigma, torch::Tensor delta,
                                                            torch::Tensor packed_info, torch::Tensor w,
                                                            torch::Tensor trans, torch::Tensor grad_w,
                                                            bool want_sigma, bool want_delta) {
    check(sigma, "sigmas", torch::kFloat32, 1);
    check(delta, "deltas", torch::kFloat32, 1);
    check(packed_info, "packed_info", torch::kInt32, 2);
    check(w, "weights", torch::kFloat32, 1);
    check(trans, "transmittance", torch::kFloat32, 1);
    check(grad_w, "grad_weights", torch::kFloat32, 1);
    c10::cuda::CUDAGuard guard(sigma.device());
    TORCH_CHECK(delta.numel() == sigma.numel() && w.numel() == sigma.numel() && trans.numel() == sigma.numel() &&
                    grad_w.numel() == sigma.numel(),
                "compositing backward: every per-sample tensor must have M elements");
    TORCH_CHECK(packed_info.size(1) == 2, "packed_info must be [R, 2]");
    auto grad_sigma = want_sigma ? torch::zeros_like(sigma) : torch::Tensor();
    auto grad_delta = want_delta ? torch::zeros_like(delta) : torch::Tensor();
    check_launch(t3d_composite_backward(sigma.data_ptr<float>(), delta.data_ptr<float>(), sigma.numel(),
                                        packed_info.data_ptr<int32_t>(), packed_info.size(0), w.data_ptr<float>(),
                                        trans.data_ptr<float>(), grad_w.data_ptr<float>(),
                                        want_sigma ? grad_sigma.data_ptr<float>() : nullptr,
                                        want_delta ? grad_delta.data_ptr<float>() : nullptr, stream_of(sigma)),
                 "compositing backward");
    return {grad_sigma, grad_delta};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "text3d CUDA kernels (sources: cuda/)";
    m.attr("SOURCES_HASH") = T3D_SOURCES_HASH;
    m.def("hashgrid_forward", &hashgrid_forward);
    m.def("hashgrid_backward", &hashgrid_backward);
    m.def("hashgrid_double_backward", &hashgrid_double_backward);
    m.def("composite_forward", &composite_forward);
    m.def("composite_backward", &composite_backward);
}
