"""text3d's CPU kernels (cuda/cpu_kernels.cpp, built with g++) against their torch twin."""

import os
import shutil

import pytest
import torch

from text3d.field.config import FieldConfig, HashGridConfig
from text3d.field.hashgrid import HashGridEncoding
from text3d.field.nerf import HashGridField
from text3d.kernels import cpu

needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                    reason="no g++ (or $CXX): the CPU kernels cannot be built here")


def encoding(features: int, log2: int, backend: str = "cpp") -> HashGridEncoding:
    torch.manual_seed(0)
    config = HashGridConfig(n_levels=5, features_per_level=features, log2_hashmap_size=log2, base_resolution=4,
                            max_resolution=200, init_scale=1.0, backend=backend)
    return HashGridEncoding(config, device="cpu")


def points(n: int = 3000) -> torch.Tensor:
    x = torch.rand(n, 3, generator=torch.Generator().manual_seed(1))
    x[:4] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.3, -0.2, 0.5], [0.999999, 1e-7, 0.5]])  # edges, outside
    return x


@needs_compiler
@pytest.mark.parametrize("features", [1, 2, 4, 8])
@pytest.mark.parametrize("log2", [8, 16])  # mostly hashed levels; mostly dense ones
def test_forward_and_table_gradient_match_the_torch_twin(features, log2):
    enc = encoding(features, log2)
    assert enc.backend == "cpp"
    x = points()
    expected = enc.encode(x, enc.table)
    got = enc(x)
    assert got.shape == expected.shape == (len(x), 5 * features)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
    upstream = torch.randn_like(expected)
    (want,) = torch.autograd.grad(expected, enc.table, upstream)
    (have,) = torch.autograd.grad(got, enc.table, upstream)
    assert have.abs().sum() > 0
    torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-5)


@needs_compiler
def test_results_do_not_depend_on_the_thread_count():
    enc = encoding(2, 12)
    x = points(20_000)
    upstream = torch.randn(len(x), 10, generator=torch.Generator().manual_seed(2))
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            out = enc(x)
            results.append((out, torch.autograd.grad(out, enc.table, upstream)[0]))
    finally:
        torch.set_num_threads(threads)
    for out, grad in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(grad, results[0][1])


@needs_compiler
def test_normals_take_the_torch_encoding_and_match_it():
    """A gradient to the points (normals from density, and their own gradient) is the torch encoding's job."""
    fields = []
    for backend in ("cpp", "torch"):
        torch.manual_seed(0)
        config = FieldConfig(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10, base_resolution=4,
                                                     max_resolution=32, init_scale=0.5, backend=backend))
        fields.append(HashGridField(config, device="cpu"))
    x = torch.rand(500, 3) * 2 - 1
    (sigma_c, _, normal_c), (sigma_t, _, normal_t) = (f.density_and_normal(x) for f in fields)
    torch.testing.assert_close(sigma_c, sigma_t)
    torch.testing.assert_close(normal_c, normal_t)
    normal_c.sum().backward()  # the orientation loss trains the table through the normals
    assert fields[0].encoding.table.grad.abs().sum() > 0


@needs_compiler
def test_bad_inputs_are_value_errors():
    enc = encoding(2, 8)
    x = points(10)
    with pytest.raises(ValueError, match=r"x: expected a float32 tensor \[N, 3\]"):
        cpu.hash_encode(x.double(), enc.table, enc.resolutions, enc.table_size)
    with pytest.raises(ValueError, match="give no gradient to x"):
        cpu.hash_encode(x.requires_grad_(), enc.table, enc.resolutions, enc.table_size)
    with pytest.raises(ValueError, match="table: expected 5 levels x table_size rows"):
        cpu.hash_encode(points(10), enc.table[:-1], enc.resolutions, enc.table_size)
    with pytest.raises(ValueError, match="features per level must be one of"):
        cpu.hash_encode(points(10), torch.zeros(5 * 256, 3), enc.resolutions, 256)


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """The CPU kernels' module as in a new process, building into an empty cache."""
    monkeypatch.setenv("TEXT3D_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cpu, "_library", None)
    monkeypatch.setattr(cpu, "_failure", None)
    return tmp_path


def test_a_failed_build_is_one_cached_line_naming_its_log(fresh_build, monkeypatch):
    compiler = fresh_build / "bad-g++"
    compiler.write_text("#!/bin/sh\necho 'cpu_kernels.cpp:1: error: something broke' >&2\nexit 1\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    problem = cpu.problem("cpu")
    log_path = cpu.library_path().parent / "error.log"
    assert problem == f"the build failed (cpu_kernels.cpp:1: error: something broke); full log: {log_path}"
    assert "something broke" in log_path.read_text()
    compiler.unlink()
    assert cpu.problem("cpu") == problem  # remembered: not built again in this process
    assert not cpu.library_path().exists()


@needs_compiler
def test_no_compiler_is_a_problem_and_a_build_is_reused(fresh_build, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler")
    assert cpu.problem("cpu") == "no C++ compiler to build them (install g++, or set CXX)"
    assert cpu.problem("cuda") == "runs on the CPU, not cuda"
    monkeypatch.setattr(cpu, "_failure", None)
    monkeypatch.delenv("CXX")
    assert cpu.problem("cpu") is None
    built = cpu.library_path()
    stamp = built.stat().st_mtime_ns
    monkeypatch.setattr(cpu, "_library", None)
    monkeypatch.setenv("CXX", "no-such-compiler")  # a second process finds the build and needs no compiler
    assert cpu.problem("cpu") is None and built.stat().st_mtime_ns == stamp
    assert [p.name for p in built.parent.iterdir()] == [built.name]  # no temp files left
