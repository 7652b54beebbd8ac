import itertools
import os
import shutil
import warnings

import pytest
import torch

from text3d.errors import BackendUnavailable
from text3d.field.hashgrid import HashGridConfig, HashGridEncoding, level_resolutions


def reference_encoding(x: torch.Tensor, enc: HashGridEncoding) -> torch.Tensor:
    """Instant-NGP encoding computed directly, point by point and level by level, with Python integers."""
    cfg, table_size = enc.config, enc.table_size
    table = enc.table.detach().double().view(cfg.n_levels, table_size, -1)
    primes = (1, 2654435761, 805459861)
    out = torch.zeros(x.shape[0], cfg.n_levels, cfg.features_per_level, dtype=torch.float64)
    for level, res in enumerate(level_resolutions(cfg)):
        side = res + 1
        for n, p in enumerate(x.double().tolist()):
            pos = [c * res for c in p]
            base = [min(int(c // 1), res - 1) for c in pos]
            frac = [c - b for c, b in zip(pos, base)]
            for offs in itertools.product((0, 1), repeat=3):
                v = [b + o for b, o in zip(base, offs)]
                if side**3 <= table_size:
                    idx = v[0] + side * v[1] + side * side * v[2]
                else:
                    idx = ((v[0] * primes[0]) ^ (v[1] * primes[1]) ^ (v[2] * primes[2])) % table_size
                w = 1.0
                for o, f in zip(offs, frac):
                    w *= f if o else 1.0 - f
                out[n, level] += w * table[level, idx]
    return out.reshape(x.shape[0], -1)


def test_resolutions_follow_the_per_level_scale():
    cfg = HashGridConfig()  # 16 levels, 16 -> 2048
    res = level_resolutions(cfg)
    assert res[0] == 16 and res[-1] == 2048 and len(res) == 16
    assert all(b > a for a, b in zip(res, res[1:]))


@pytest.mark.parametrize("log2", [12, 19])
def test_forward_matches_direct_per_level_computation(log2):
    torch.manual_seed(0)
    cfg = HashGridConfig(n_levels=6, log2_hashmap_size=log2, base_resolution=4, max_resolution=300, init_scale=1.0)
    enc = HashGridEncoding(cfg).double()  # float64, so the comparison is exact up to rounding
    x = torch.rand(40, 3, dtype=torch.float64)
    x[0] = torch.tensor([1.0, 1.0, 1.0])  # the far corner must land in the last cell
    x[1] = torch.tensor([0.0, 0.5, 1.0])
    expected = reference_encoding(x, enc)
    got = enc(x)
    assert got.shape == (40, 6 * 2)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    # float32 agrees to float32 precision of x * resolution
    torch.testing.assert_close(enc.float()(x.float()).double(), expected, rtol=0, atol=1e-4)


def test_levels_split_into_dense_and_hashed():
    cfg = HashGridConfig(n_levels=6, log2_hashmap_size=12, base_resolution=4, max_resolution=300)
    enc = HashGridEncoding(cfg)
    # (r+1)^3 <= 4096 only for r <= 15
    assert enc._n_dense == sum((r + 1) ** 3 <= 4096 for r in level_resolutions(cfg))
    assert 0 < enc._n_dense < 6


def test_gradcheck_table_and_positions():
    torch.manual_seed(0)
    cfg = HashGridConfig(n_levels=3, features_per_level=2, log2_hashmap_size=6, base_resolution=2, max_resolution=9)
    enc = HashGridEncoding(cfg).double()
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    # Keep points away from cell borders, where the encoding is only piecewise smooth.
    x = (torch.rand(5, 3, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    table = enc.table.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(enc.encode, (x, table), eps=1e-6, atol=1e-5)


def test_table_gradient_lands_on_the_gathered_rows():
    cfg = HashGridConfig(n_levels=2, log2_hashmap_size=8, base_resolution=2, max_resolution=4)
    enc = HashGridEncoding(cfg)
    x = torch.tensor([[0.1, 0.1, 0.1]])
    enc(x).sum().backward()
    touched = (enc.table.grad.abs().sum(-1) > 0).nonzero().flatten()
    assert len(touched) == 2 * 8  # 8 corners at each of 2 levels
    # Per level the corner weights sum to one, so the summed gradient per channel is 1 per level.
    torch.testing.assert_close(enc.table.grad.sum(0), torch.tensor([2.0, 2.0]))


@pytest.mark.parametrize("backend", ["tcnn", "cuda"])
def test_an_accelerated_backend_by_name_without_cuda_is_a_one_line_user_error(backend):
    with pytest.raises(BackendUnavailable, match=f"hash grid: backend '{backend}' needs a CUDA device, not cpu"):
        HashGridEncoding(HashGridConfig(n_levels=2, log2_hashmap_size=8, backend=backend), device="cpu")


def test_auto_on_cpu_takes_the_cpu_kernels_without_a_warning():
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("no g++ (or $CXX): the CPU kernels cannot be built here")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert HashGridEncoding(HashGridConfig(n_levels=2, log2_hashmap_size=8), device="cpu").backend == "cpp"
