"""text3d's CUDA kernels (cuda/) against their torch twins.

Without a GPU: the kernels' math (cuda/*.h) compiled for the CPU by g++ (tests/cuda/host_harness.cpp) against the
twins, edge cases included; the autograd wrappers of text3d.kernels, the hash-grid field and the volume renderer
driven through that CPU build; an nvcc compile of every .cu for sm_80 and sm_90 and a compile of the torch binding.
With a GPU (marker ``gpu``): the kernels themselves against the twins, in fp32 (tight) and fp16 tables (loose).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from text3d import kernels
from text3d.field.hashgrid import HashGridConfig, HashGridEncoding
from text3d.field.nerf import FieldConfig, HashGridField
from text3d.kernels import _backend
from text3d.kernels.hashgrid import _Encode
from text3d.renderer import compositing
from text3d.renderer.cameras import spherical_cameras
from text3d.renderer.compositing import pack_info, render_weight_from_density
from text3d.renderer.volume import RendererConfig, VolumeRenderer

CUDA_DIR = Path(__file__).resolve().parent.parent / "cuda"
HARNESS = Path(__file__).resolve().parent / "cuda" / "host_harness.cpp"

# (features, levels, log2 table size, base and max resolution): dense and hashed levels, every supported F.
GRIDS = [(2, 6, 12, 4, 300), (1, 3, 6, 2, 40), (4, 4, 10, 3, 64), (8, 2, 8, 5, 9)]


# --------------------------------------------------------------------------------------------------------------------
# The kernels' math built for the CPU, behind the compiled module's API


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p | None:
    return None if t is None else ctypes.c_void_p(t.data_ptr())


class HostKernels:
    """The compiled module's API (cuda/bindings.cpp) over the host build of the kernels' math: CPU, float32."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib

    @staticmethod
    def _grid(table, resolutions, table_size):
        res = (ctypes.c_int32 * len(resolutions))(*resolutions)
        return len(resolutions), table.shape[1], ctypes.c_uint32(table_size), res

    def hashgrid_forward(self, x, table, resolutions, table_size):
        levels, features, size, res = self._grid(table, resolutions, table_size)
        out = torch.empty(x.shape[0], levels * features)
        rc = self.lib.host_hashgrid_forward(_ptr(x), _ptr(table), _ptr(out), ctypes.c_int64(x.shape[0]), levels,
                                            features, size, res)
        assert rc == 0
        return out

    def hashgrid_backward(self, x, table, grad_out, resolutions, table_size, want_table, want_x):
        levels, features, size, res = self._grid(table, resolutions, table_size)
        grad_table = torch.zeros(table.shape) if want_table else torch.empty(0)
        grad_x = torch.zeros(x.shape[0], 3) if want_x else torch.empty(0)
        rc = self.lib.host_hashgrid_backward(_ptr(x), _ptr(table), _ptr(grad_out.contiguous()),
                                             ctypes.c_int64(x.shape[0]), levels, features, size, res,
                                             _ptr(grad_table) if want_table else None, _ptr(grad_x) if want_x else None)
        assert rc == 0
        return grad_table, grad_x

    def hashgrid_double_backward(self, x, table, grad_out, ggx, ggt, resolutions, table_size, want_table, want_x):
        levels, features, size, res = self._grid(table, resolutions, table_size)
        dg = torch.empty(grad_out.shape)
        dtable = torch.zeros(table.shape) if want_table else torch.empty(0)
        dx = torch.zeros(x.shape[0], 3) if want_x else torch.empty(0)
        rc = self.lib.host_hashgrid_double_backward(
            _ptr(x), _ptr(table), _ptr(grad_out), _ptr(ggx), _ptr(ggt), ctypes.c_int64(x.shape[0]), levels, features,
            size, res, _ptr(dg), _ptr(dtable) if want_table else None, _ptr(dx) if want_x else None,
        )
        assert rc == 0
        return dg, dtable, dx

    def composite_forward(self, sigma, delta, packed_info):
        w, trans = torch.zeros_like(sigma), torch.zeros_like(sigma)
        self.lib.host_composite_forward(_ptr(sigma), _ptr(delta), _ptr(packed_info),
                                        ctypes.c_int64(packed_info.shape[0]), _ptr(w), _ptr(trans))
        return w, trans

    def composite_backward(self, sigma, delta, packed_info, w, trans, grad_w, want_sigma, want_delta):
        gs, gd = torch.zeros_like(sigma), torch.zeros_like(sigma)
        self.lib.host_composite_backward(_ptr(sigma), _ptr(delta), _ptr(packed_info),
                                         ctypes.c_int64(packed_info.shape[0]), _ptr(w), _ptr(trans), _ptr(grad_w),
                                         _ptr(gs) if want_sigma else None, _ptr(gd) if want_delta else None)
        return (gs if want_sigma else torch.Tensor()), (gd if want_delta else torch.Tensor())


@pytest.fixture(scope="session")
def host(tmp_path_factory) -> HostKernels:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the kernels' math for the CPU")
    lib = tmp_path_factory.mktemp("harness") / "host_harness.so"
    # No contraction into FMAs: the torch twin rounds every product on the CPU.
    cmd = [compiler, "-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC", f"-I{CUDA_DIR}", str(HARNESS),
           "-o", str(lib)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return HostKernels(ctypes.CDLL(str(lib)))


@pytest.fixture
def host_module(host, monkeypatch) -> HostKernels:
    """text3d.kernels' autograd wrappers calling the host build instead of the compiled CUDA module."""
    monkeypatch.setattr(kernels.hashgrid, "load", lambda: host)
    monkeypatch.setattr(kernels.volume, "load", lambda: host)
    return host


# --------------------------------------------------------------------------------------------------------------------
# Inputs and references


def make_encoding(features, levels, log2, base, top, device="cpu", dtype=torch.float32) -> HashGridEncoding:
    torch.manual_seed(0)
    config = HashGridConfig(n_levels=levels, features_per_level=features, log2_hashmap_size=log2,
                            base_resolution=base, max_resolution=top, init_scale=1.0, backend="torch")
    enc = HashGridEncoding(config, device=device)
    enc.table.data = enc.table.data.to(dtype)
    return enc


def edge_points(enc: HashGridEncoding, n: int, device="cpu") -> torch.Tensor:
    """Random points plus points on cell borders of several levels, on the cube's faces, corners and outside it."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, generator=g)
    res = enc.resolutions
    border = []
    for r in (res[0], res[len(res) // 2], res[-1]):
        k = torch.randint(0, r + 1, (6, 3), generator=g).float() / r  # vertices of level r (and its far face)
        border += [k, torch.cat([k[:, :1], torch.rand(6, 2, generator=g)], dim=1)]  # on a vertex, on a face
    special = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5], [-0.25, 0.5, 1.3],
                            [1.5, -2.0, 0.3], [0.5, 0.5, 1.0 - 1e-7], [1e-8, 0.999999, 0.5]])
    return torch.cat([x, *border, special]).to(device)


def twin_double_backward(enc, x, table, g, ggx, ggt):
    """Reference gradients of <ggx, grad_x> + <ggt, grad_table> with respect to (g, x, table), by autograd."""
    x = x.clone().requires_grad_(True)
    table = table.clone().requires_grad_(True)
    g = g.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(enc.encode(x, table), x, g, create_graph=True)
    # <ggt, grad_table> = <g, encode(x, ggt)>: grad_table is linear in g (the gather's backward is not
    # differentiable twice in torch, so the identity stands in for it).
    total = (gx * ggx).sum() + (g * enc.encode(x, ggt)).sum()
    return torch.autograd.grad(total, (g, x, table))


def packed_rays(device="cpu"):
    """Rays of 0, 1, 5, 0, 17 and 2 samples: random densities with zeros and a large one, positive intervals."""
    g = torch.Generator().manual_seed(2)
    counts = torch.tensor([0, 1, 5, 0, 17, 2])
    m = int(counts.sum())
    sigmas = torch.rand(m, generator=g) * 30.0
    sigmas[[2, 3, 10]] = 0.0
    sigmas[12] = 500.0
    deltas = torch.rand(m, generator=g) * 0.05 + 0.01
    return sigmas.to(device), deltas.to(device), pack_info(counts).to(device)


def composite_float64(sigmas, deltas, packed_info) -> torch.Tensor:
    """Weights computed directly, sample by sample, in float64."""
    out = torch.zeros(sigmas.shape[0], dtype=torch.float64)
    for start, count in packed_info.tolist():
        depth = 0.0
        for i in range(start, start + count):
            s = float(sigmas[i]) * float(deltas[i])
            out[i] = (1.0 - torch.exp(torch.tensor(-s, dtype=torch.float64))) * torch.exp(
                torch.tensor(-depth, dtype=torch.float64))
            depth += s
    return out


# --------------------------------------------------------------------------------------------------------------------
# The kernels' math (host build) against the twins


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"F{g[0]}-L{g[1]}-T2^{g[2]}")
def test_host_hashgrid_forward_and_backward_match_the_torch_encoding(host, grid):
    enc = make_encoding(*grid)
    assert 0 < enc._n_dense < enc.config.n_levels or grid[2] <= 6 or grid[0] == 8  # dense and hashed levels
    x, table = edge_points(enc, 200), enc.table.detach()
    out = host.hashgrid_forward(x, table, enc.resolutions, enc.table_size)
    expected = enc.encode(x, table)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)

    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(3))
    xr, tr = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
    enc.encode(xr, tr).backward(g)
    grad_table, grad_x = host.hashgrid_backward(x, table, g, enc.resolutions, enc.table_size, True, True)
    torch.testing.assert_close(grad_table, tr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_x, xr.grad, rtol=1e-4, atol=1e-3)
    outside = ((x < 0) | (x > 1))
    assert (grad_x[outside] == 0).all()  # clamped coordinates get no gradient, as with torch's clamp


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"F{g[0]}-L{g[1]}-T2^{g[2]}")
def test_host_hashgrid_double_backward_matches_autograd_of_the_torch_encoding(host, grid):
    enc = make_encoding(*grid)
    x, table = edge_points(enc, 100), enc.table.detach()
    gen = torch.Generator().manual_seed(4)
    g = torch.randn(x.shape[0], enc.output_dim, generator=gen)
    ggx, ggt = torch.randn(x.shape, generator=gen), torch.randn(table.shape, generator=gen)
    expected = twin_double_backward(enc, x, table, g, ggx, ggt)
    dg, dtable, dx = host.hashgrid_double_backward(x, table, g, ggx, ggt, enc.resolutions, enc.table_size, True, True)
    for got, want in zip((dg, dx, dtable), expected):
        scale = want.abs().max().clamp(min=1.0)
        torch.testing.assert_close(got / scale, want / scale, rtol=1e-4, atol=1e-5)
    # Without the table's upstream gradient, only the grad_x terms remain.
    dg_x, _, _ = host.hashgrid_double_backward(x, table, g, ggx, None, enc.resolutions, enc.table_size, True, True)
    expected_x = twin_double_backward(enc, x, table, g, ggx, torch.zeros_like(ggt))
    torch.testing.assert_close(dg_x, expected_x[0], rtol=1e-4, atol=1e-4)


def test_host_compositing_matches_the_torch_twin_and_a_float64_reference(host):
    sigmas, deltas, info = packed_rays()
    w, trans = host.composite_forward(sigmas, deltas, info)
    twin = compositing._weights_torch(sigmas, deltas, info)
    torch.testing.assert_close(w, twin, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(w.double(), composite_float64(sigmas, deltas, info), rtol=1e-5, atol=1e-7)
    assert w[0] == pytest.approx(-torch.expm1(-sigmas[0] * deltas[0]).item())  # a single sample: its own alpha
    assert (trans[info[:, 0][info[:, 1] > 0].long()] == 1.0).all()  # nothing in front of a ray's first sample

    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(5))
    s, d = sigmas.clone().requires_grad_(True), deltas.clone().requires_grad_(True)
    compositing._weights_torch(s, d, info).backward(g)
    gs, gd = host.composite_backward(sigmas, deltas, info, w, trans, g, True, True)
    torch.testing.assert_close(gs, s.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gd, d.grad, rtol=1e-4, atol=1e-5)


def test_torch_compositing_of_no_samples_and_empty_rays():
    info = pack_info(torch.tensor([0, 0, 0]))
    assert info.tolist() == [[0, 0], [0, 0], [0, 0]]
    w = render_weight_from_density(torch.zeros(0), torch.zeros(0), info)
    assert w.shape == (0,)
    w = render_weight_from_density(torch.zeros(0), torch.zeros(0), pack_info(torch.zeros(0, dtype=torch.int64)))
    assert w.shape == (0,)


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.zeros(3).double(), torch.zeros(3), pack_info(torch.tensor([3]))), "sigmas: expected a float32"),
        ((torch.zeros(3), torch.zeros(2), pack_info(torch.tensor([3]))), "deltas: shape"),
        ((torch.zeros(3), torch.zeros(3), torch.tensor([[0, 3]])), "packed_info: expected an int32"),
    ],
)
def test_compositing_rejects_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        render_weight_from_density(*args)


# --------------------------------------------------------------------------------------------------------------------
# The autograd wrappers, the field and the renderer over the host build


def test_encode_function_first_and_second_order_match_the_torch_encoding(host_module):
    enc = make_encoding(2, 6, 12, 4, 300)
    x0, table0 = edge_points(enc, 150), enc.table.detach()
    proj0 = torch.randn(enc.output_dim, generator=torch.Generator().manual_seed(6))
    view = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    grads = {}
    for name, encode in (("kernel", lambda x, t: _Encode.apply(x, t, (enc.resolutions, enc.table_size))),
                         ("twin", enc.encode)):
        x, table, proj = (t.clone().requires_grad_(True) for t in (x0, table0, proj0))
        y = encode(x, table)
        sigma = (y * proj).sum(-1)  # stands in for the MLP: gradients must reach its weights through grad_x
        (gx,) = torch.autograd.grad(sigma.sum(), x, create_graph=True)
        loss = (gx * view).sum() + 0.1 * y.square().sum()
        loss.backward()
        grads[name] = y.detach(), gx.detach(), table.grad, proj.grad, x.grad
    for got, want in zip(grads["kernel"], grads["twin"]):
        scale = want.abs().max().clamp(min=1.0)
        torch.testing.assert_close(got / scale, want / scale, rtol=1e-4, atol=1e-5)

    # Points that need no gradient: only the table's.
    table = table0.clone().requires_grad_(True)
    _Encode.apply(x0, table, (enc.resolutions, enc.table_size)).sum().backward()
    assert table.grad is not None and table.grad.abs().sum() > 0


def test_field_on_the_kernels_trains_normals_like_the_torch_backend(host_module, monkeypatch):
    """The coarse stage's hardest use: normals from density gradients with an orientation-style loss on them."""
    config = FieldConfig(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10, base_resolution=4,
                                                 max_resolution=32, init_scale=0.5, backend="torch"), hidden_dim=16)
    monkeypatch.setattr(kernels, "hash_encode", lambda x, t, res, size: _Encode.apply(x, t, (res, size)))
    x = torch.rand(256, 3, generator=torch.Generator().manual_seed(8)) * 1.6 - 0.8
    grads = {}
    for backend in ("torch", "cuda"):
        torch.manual_seed(0)
        field = HashGridField(config)
        field.encoding.backend = backend  # the same table either way
        sigma, rgb, normal = field.density_and_normal(x)
        loss = (normal * torch.tensor([0.3, -0.5, 0.8])).sum() + sigma.mean() + rgb.mean()
        loss.backward()
        grads[backend] = [sigma.detach(), normal.detach()] + [p.grad.clone() for p in field.parameters()]
    for got, want in zip(grads["cuda"], grads["torch"]):
        scale = want.abs().max().clamp(min=1e-3)
        torch.testing.assert_close(got / scale, want / scale, rtol=1e-4, atol=1e-4)


def test_volume_renderer_packed_kernel_path_matches_the_dense_path(host_module, monkeypatch):
    monkeypatch.setattr("text3d.renderer.volume.render_weight_from_density",
                        lambda s, d, info, backend: kernels.render_weight_from_density(s, d, info))
    field_config = FieldConfig(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10, base_resolution=4,
                                                       max_resolution=32, backend="torch"), hidden_dim=16)
    one = torch.ones(2)
    cameras = spherical_cameras(torch.tensor([0.0, 120.0]), 15 * one, 2.5 * one, 50 * one, 12, 12)
    out = {}
    for mode in ("torch", "cuda"):
        torch.manual_seed(0)
        field = HashGridField(field_config)
        renderer = VolumeRenderer(RendererConfig(num_samples=24), field.radius)
        renderer.compositing = mode
        renders = renderer.render(field, cameras, generator=torch.Generator().manual_seed(1))
        seen = renders["opacity"].detach() > 1e-3  # depth is a ratio of vanishing sums where nothing is hit
        (renders["rgb"].square().sum() + (renders["depth"] * seen).mean()).backward()
        out[mode] = [renders["rgb"].detach(), renders["opacity"].detach(), renders["depth"].detach()[seen]]
        out[mode] += [p.grad for p in field.parameters()]
    # The kernel computes alpha as -expm1(-s), which keeps densities too thin for 1 - exp(-s) in float32.
    for got, want in zip(out["cuda"], out["torch"]):
        scale = want.abs().max().clamp(min=1e-3)
        torch.testing.assert_close(got / scale, want / scale, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------------------------
# Loading


def test_sources_are_complete_and_hashed():
    folder = kernels.source_dir()
    for name in (*_backend.SOURCES, *_backend.HEADERS):
        assert (folder / name).is_file(), name
    assert len(_backend.sources_hash()) == 16
    assert _backend.sources_hash() == _backend.sources_hash(CUDA_DIR)


def test_problem_off_cuda_and_one_cached_error(monkeypatch, tmp_path):
    assert kernels.problem("cpu") == "needs a CUDA device, not cpu"
    monkeypatch.setattr(_backend, "_module", None)
    monkeypatch.setattr(_backend, "_failure", None)
    calls = []

    def failing_jit():
        calls.append(1)
        raise _backend.KernelsUnavailable("the JIT build failed (nvcc fatal: no sm_90); full log: /x/error.log")

    monkeypatch.setattr(_backend, "_jit", failing_jit)
    for _ in range(2):
        message = kernels.problem("cuda:0")
        assert message == "the JIT build failed (nvcc fatal: no sm_90); full log: /x/error.log"
    assert len(calls) == 1  # tried once, then the same line every time


def test_a_prebuilt_extension_is_used_only_when_built_from_these_sources(monkeypatch):
    fake = type(sys)("text3d._C")
    monkeypatch.setitem(sys.modules, "text3d._C", fake)
    monkeypatch.setattr(_backend, "_jit", lambda: "jit module")
    for stamp, expected in ((_backend.sources_hash(), fake), ("0123456789abcdef", "jit module")):
        monkeypatch.setattr(_backend, "_module", None)
        monkeypatch.setattr(_backend, "_failure", None)
        fake.SOURCES_HASH = stamp
        assert _backend.load() is expected


def test_a_cpu_build_of_torch_says_so(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(_backend.KernelsUnavailable, match="is a CPU build"):
        _backend._jit()


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXT3D_CACHE_DIR", str(tmp_path / "c"))
    assert _backend.cache_dir() == tmp_path / "c"
    assert _backend._build_dir().parent.parent.parent == tmp_path / "c"
    monkeypatch.delenv("TEXT3D_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert _backend.cache_dir() == tmp_path / "x" / "text3d"


def test_importing_text3d_builds_and_imports_nothing_compiled():
    code = ("import sys, text3d, text3d.field.nerf, text3d.renderer.volume; "
            "print(sorted(m for m in sys.modules if m in ('text3d._C', 'torch.utils.cpp_extension') "
            "or m.startswith('text3d_cuda')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------------------------------
# Compiling without a GPU


def find_nvcc() -> Path | None:
    """nvcc on PATH, under CUDA_HOME, or from the nvidia-cuda-nvcc wheel."""
    candidates = [shutil.which("nvcc")]
    if os.environ.get("CUDA_HOME"):
        candidates.append(str(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc"))
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidates += [str(p) for p in sorted(Path(root).glob("*/bin/nvcc"))]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def cuda_includes(nvcc: Path) -> list[str]:
    """The include folders nvcc itself uses (it may be a wrapper script far from its toolkit)."""
    done = subprocess.run([str(nvcc), "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                          capture_output=True, text=True)
    folders = []
    for line in done.stderr.splitlines() + done.stdout.splitlines():
        if "INCLUDES=" in line:
            folders += [part.strip('"') for part in line.split("=", 1)[1].split() if part.strip('"').startswith(
                ("-I", "/"))]
    return [f.removeprefix("-I") for f in folders]


NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="no nvcc (pip install nvidia-cuda-nvcc nvidia-cuda-runtime)")


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", sorted(p.name for p in CUDA_DIR.glob("*.cu")))
def test_every_kernel_compiles_with_nvcc(source, arch, tmp_path):
    cubin = tmp_path / f"{source}.{arch}.cubin"
    cmd = [str(NVCC), "-std=c++17", "-O3", "-cubin", f"-arch={arch}", f"-I{CUDA_DIR}", str(CUDA_DIR / source),
           "-o", str(cubin)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert cubin.stat().st_size > 1000


@needs_nvcc
def test_the_torch_binding_compiles(tmp_path):
    from torch.utils.cpp_extension import include_paths

    includes = [*include_paths(), *cuda_includes(NVCC), sysconfig.get_paths()["include"], str(CUDA_DIR)]
    torch_include = Path(include_paths()[0])
    if not (torch_include / "c10/cuda/impl/cuda_cmake_macros.h").exists():
        # A CPU build of torch ships c10/cuda's headers without this generated one; CUDA builds define the macro.
        stub = tmp_path / "c10/cuda/impl/cuda_cmake_macros.h"
        stub.parent.mkdir(parents=True)
        stub.write_text("#define C10_CUDA_BUILD_SHARED_LIBS\n")
        includes.append(str(tmp_path))
    compiler = shutil.which("g++") or shutil.which("c++")
    cmd = [compiler, "-std=c++20", "-fsyntax-only", "-DTORCH_EXTENSION_NAME=text3d_check",
           *(f"-I{p}" for p in includes), str(CUDA_DIR / "bindings.cpp")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


# --------------------------------------------------------------------------------------------------------------------
# On a GPU: the kernels themselves


def cuda_encoding(grid, dtype=torch.float32):
    return make_encoding(*grid, device="cuda", dtype=dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"F{g[0]}-L{g[1]}-T2^{g[2]}")
def test_gpu_hash_encode_matches_the_torch_encoding_fp32(grid):
    enc = cuda_encoding(grid)
    x0, table0 = edge_points(enc, 4000, "cuda"), enc.table.detach()
    g = torch.randn(x0.shape[0], enc.output_dim, device="cuda")
    got, want = {}, {}
    for name, fn, store in (("kernel", kernels.hash_encode, got), ("twin", None, want)):
        x, table = x0.clone().requires_grad_(True), table0.clone().requires_grad_(True)
        y = fn(x, table, enc.resolutions, enc.table_size) if fn else enc.encode(x, table)
        y.backward(g)
        store.update(y=y.detach(), gx=x.grad, gt=table.grad)
    torch.testing.assert_close(got["y"], want["y"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["gt"], want["gt"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got["gx"], want["gx"], rtol=1e-3, atol=1e-2)

    ggx, ggt = torch.randn_like(x0), torch.randn_like(table0)
    expected = twin_double_backward(enc, x0, table0, g, ggx, ggt)
    x, table, gg = x0.clone().requires_grad_(True), table0.clone().requires_grad_(True), g.clone().requires_grad_(True)
    y = kernels.hash_encode(x, table, enc.resolutions, enc.table_size)
    gx, gt = torch.autograd.grad(y, (x, table), gg, create_graph=True)
    result = torch.autograd.grad((gx * ggx).sum() + (gt * ggt).sum(), (gg, x, table))
    for a, b in zip(result, expected):
        scale = b.abs().max().clamp(min=1.0)
        torch.testing.assert_close(a / scale, b / scale, rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
def test_gpu_hash_encode_fp16_table_is_close_to_fp32():
    grid = GRIDS[0]
    enc = cuda_encoding(grid)
    x = edge_points(enc, 4000, "cuda")
    table16 = enc.table.detach().half().requires_grad_(True)
    y16 = kernels.hash_encode(x, table16, enc.resolutions, enc.table_size)
    assert y16.dtype == torch.float16
    y32 = enc.encode(x, table16.detach().float())
    torch.testing.assert_close(y16.float(), y32, rtol=1e-2, atol=2e-3)
    y16.float().sum().backward()
    table32 = table16.detach().float().requires_grad_(True)
    enc.encode(x, table32).sum().backward()
    assert table16.grad.dtype == torch.float16
    torch.testing.assert_close(table16.grad.float(), table32.grad, rtol=1e-2, atol=1e-2)


@pytest.mark.gpu
def test_gpu_compositing_matches_the_torch_twin():
    sigmas0, deltas0, info = packed_rays("cuda")
    big = torch.randint(0, 300, (5000,), device="cuda")
    counts = torch.cat([info[:, 1].long(), big])
    sigmas0 = torch.cat([sigmas0, torch.rand(int(big.sum()), device="cuda") * 20])
    deltas0 = torch.cat([deltas0, torch.rand(int(big.sum()), device="cuda") * 0.02])
    info = pack_info(counts)
    g = torch.randn_like(sigmas0)
    out = {}
    for backend in ("cuda", "torch"):
        s, d = sigmas0.clone().requires_grad_(True), deltas0.clone().requires_grad_(True)
        w = render_weight_from_density(s, d, info, backend=backend)
        w.backward(g)
        out[backend] = w.detach(), s.grad, d.grad
    for got, want in zip(out["cuda"], out["torch"]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_gpu_auto_picks_the_kernels_and_the_renderer_agrees_with_dense():
    field_config = FieldConfig(encoding=HashGridConfig(n_levels=8, log2_hashmap_size=15), hidden_dim=32)
    assert HashGridEncoding(field_config.encoding, device="cuda").backend == "cuda"
    one = torch.ones(2, device="cuda")
    cameras = spherical_cameras(torch.tensor([0.0, 120.0], device="cuda"), 15 * one, 2.5 * one, 50 * one, 64, 64)
    out = {}
    for backend in ("torch", "cuda"):
        torch.manual_seed(0)
        field = HashGridField(field_config, device="cuda")
        renderer = VolumeRenderer(RendererConfig(num_samples=64, backend=backend), field.radius, device="cuda")
        assert renderer.compositing == backend
        renders = renderer.render(field, cameras, shading="lambertian",
                                  light_dirs=torch.tensor([[0.0, 0.0, 1.0]] * 2, device="cuda"),
                                  generator=torch.Generator().manual_seed(1))
        (renders["rgb"].square().sum() + renders["orientation"].mean()).backward()
        out[backend] = [renders[k].detach() for k in ("rgb", "opacity")] + [p.grad for p in field.parameters()]
    for got, want in zip(out["cuda"], out["torch"]):
        scale = want.abs().max().clamp(min=1e-3)
        torch.testing.assert_close(got / scale, want / scale, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("tinycudann") is None, reason="tinycudann is not installed")
def test_gpu_tcnn_fits_like_the_torch_encoding():
    """tiny-cuda-nn lays out its grid differently (half-cell offsets, its own hashing), so tables cannot be compared
    entry by entry; the same small fit must reach a similar loss with either."""
    config = HashGridConfig(n_levels=8, log2_hashmap_size=14, base_resolution=8, max_resolution=128)
    x = torch.rand(8192, 3, device="cuda")
    target = torch.sin(6 * x).prod(-1, keepdim=True)
    losses = {}
    for backend in ("tcnn", "torch"):
        torch.manual_seed(0)
        enc = HashGridEncoding(HashGridConfig(**{**config.__dict__, "backend": backend}), device="cuda")
        head = torch.nn.Linear(enc.output_dim, 1).cuda()
        opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=1e-2)
        for _ in range(300):
            loss = (head(enc(x).float()) - target).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses[backend] = loss.item()
    assert losses["tcnn"] < 2 * losses["torch"] + 1e-4 and losses["torch"] < 2 * losses["tcnn"] + 1e-4, losses
