"""Multiresolution hash encoding (Instant-NGP): a pure-torch reference, text3d's CUDA kernels, or tiny-cuda-nn."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from text3d import kernels
from text3d.backends import select_backend
from text3d.field.config import HashGridConfig

# Instant-NGP's spatial-hash primes; the first is 1 so x stays coherent in memory.
_PRIMES = (1, 2654435761, 805459861)


def level_resolutions(config: HashGridConfig) -> list[int]:
    """Cells per axis at each level: ``floor(base * scale^l)``."""
    s = config.per_level_scale
    return [int(math.floor(config.base_resolution * s**level + 1e-6)) for level in range(config.n_levels)]


def _wrap_int32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


class _GatherRows(torch.autograd.Function):
    """``table[index]`` for ``table: [T, F]``, ``index: [M]`` (int32) with a scatter-add backward.

    Faster on CPU than ``F.embedding``, whose dense backward sorts the indices. For F=2 float32 rows the
    gather reads each row as one float64 word: a 1-D gather is about 3x faster than a row gather there.
    """

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.table_shape = table.shape
        if table.dtype == torch.float32 and table.shape[1] == 2 and table.is_contiguous():
            return table.view(torch.float64).view(-1).index_select(0, index).view(torch.float32).view(-1, 2)
        return table.index_select(0, index)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (index,) = ctx.saved_tensors
        rows, width = ctx.table_shape
        # A 1-D scatter over (row, channel) with int64 indices is the fastest index_add_ on CPU (~2x a row scatter).
        flat = (index.long()[:, None] * width + torch.arange(width, device=index.device)).reshape(-1)
        grad_table = grad.new_zeros(rows * width).index_add_(0, flat, grad.reshape(-1))
        return grad_table.view(rows, width), None


class HashGridEncoding(nn.Module):
    """Encodes points ``x: [N, 3]`` in the unit cube ``[0, 1]^3`` into ``[N, n_levels * features_per_level]``.

    Level ``l`` has ``floor(base * scale^l)`` cells per axis; features at the cell's 8 corners are blended
    trilinearly, so the output is differentiable in both the table and ``x``.
    """

    def __init__(self, config: HashGridConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        self.resolutions = level_resolutions(config)
        self.table_size = 2**config.log2_hashmap_size
        self.backend = select_backend(
            "hash grid", config.backend, device, {"cuda": self._cuda_problem, "tcnn": _tcnn_problem},
            {"cpp": self._cpp_problem},
        )
        if self.backend == "tcnn":
            self._tcnn = _make_tcnn_encoding(config)
        else:
            table = torch.empty(config.n_levels * self.table_size, config.features_per_level, device=device)
            self.table = nn.Parameter(table.uniform_(-config.init_scale, config.init_scale))
            # Resolutions grow with the level, so the densely indexed levels come first.
            self._n_dense = sum((r + 1) ** 3 <= self.table_size for r in self.resolutions)
            mult = [[1, r + 1, (r + 1) ** 2] for r in self.resolutions[: self._n_dense]]
            mult += [[_wrap_int32(p) for p in _PRIMES]] * (config.n_levels - self._n_dense)
            self.register_buffer("_res", torch.tensor(self.resolutions, device=device), persistent=False)
            self.register_buffer("_axis_mult", torch.tensor(mult, dtype=torch.int32, device=device), persistent=False)
            offsets = torch.arange(config.n_levels, dtype=torch.int32, device=device) * self.table_size
            self.register_buffer("_level_offset", offsets, persistent=False)

    @property
    def output_dim(self) -> int:
        return self.config.output_dim

    def forward(self, x: Tensor) -> Tensor:
        if self.backend == "tcnn":
            return self._tcnn(x.clamp(0.0, 1.0)).to(x.dtype)
        if self.backend == "cuda":
            return kernels.hash_encode(x.float(), self.table, self.resolutions, self.table_size)
        # The CPU kernels give no gradient to x (normals take the torch encoding) and hold float32 tables only.
        if self.backend == "cpp" and not x.requires_grad and self.table.dtype == torch.float32:
            return kernels.cpu.hash_encode(x.float(), self.table, self.resolutions, self.table_size)
        return self.encode(x, self.table)

    def encode(self, x: Tensor, table: Tensor) -> Tensor:
        """The torch encoding of ``x: [N, 3]`` with an explicit ``table: [L * T, F]`` (tests, gradcheck)."""
        n, levels = x.shape[0], self.config.n_levels
        res = self._res.to(x.dtype)  # [L]
        pos = x.clamp(0.0, 1.0)[:, None, :] * res[None, :, None]  # [N, L, 3] in cell units
        # Clamp the lower corner so x == 1 falls in the last cell rather than past it.
        cell = torch.minimum(pos.detach().floor(), (res - 1)[None, :, None])
        frac = pos - cell  # differentiable in x
        idx = self._cell_corner_indices(cell.long())  # [N, L, 8]
        # Trilinear weights as an outer product over axes; corner c = x_bit + 2*y_bit + 4*z_bit.
        wx, wy, wz = (torch.stack([1.0 - frac[..., a], frac[..., a]], dim=-1) for a in range(3))  # [N, L, 2]
        w = (wz[..., :, None, None] * wy[..., None, :, None] * wx[..., None, None, :]).reshape(n, levels, 8)
        # Sizes spelled out: with no points (a render that covers nothing) a -1 would be ambiguous.
        features = table.shape[1]
        feats = _GatherRows.apply(table, idx.reshape(-1)).view(n, levels, 8, features)  # [N, L, 8, F]
        out = (feats * w.unsqueeze(-1).to(feats.dtype)).sum(dim=2)  # [N, L, F]
        return out.reshape(n, levels * features)

    def _cell_corner_indices(self, cell: Tensor) -> Tensor:
        """Flat table rows of the 8 corners of each cell, ``cell: [N, L, 3]`` -> ``[N, L, 8]`` int32.

        Per axis, the two corner coordinates are scaled once (by the dense strides, or by the hash primes);
        the 8 corners are then an outer sum (dense levels) or an outer XOR (hashed levels). int32 arithmetic
        wraps on overflow, which leaves the low bits — all the hash keeps — the same as in int64.
        """
        lo_hi = torch.stack([cell, cell + 1], dim=-1).int()  # [N, L, 3, 2]
        terms = lo_hi * self._axis_mult[None, :, :, None]  # [N, L, 3, 2]
        nd = self._n_dense

        def outer(t: Tensor, op) -> Tensor:  # [N, l, 3, 2] -> [N, l, 8], corner = x + 2y + 4z
            tx, ty, tz = t[:, :, 0], t[:, :, 1], t[:, :, 2]
            return op(op(tz[..., :, None, None], ty[..., None, :, None]), tx[..., None, None, :]).flatten(-3)

        dense = outer(terms[:, :nd], torch.add)
        hashed = outer(terms[:, nd:], torch.bitwise_xor) & (self.table_size - 1)
        return torch.cat([dense, hashed], dim=1) + self._level_offset[None, :, None]


    def _cuda_problem(self, device: torch.device) -> str | None:
        if self.config.features_per_level not in kernels.hashgrid.FEATURES:
            return f"features_per_level must be one of {kernels.hashgrid.FEATURES}"
        return kernels.problem(device)

    def _cpp_problem(self, device: torch.device) -> str | None:
        if self.config.features_per_level not in kernels.hashgrid.FEATURES:
            return f"features_per_level must be one of {kernels.hashgrid.FEATURES}"
        return kernels.cpu.problem(device)


def _tcnn_problem(device: torch.device) -> str | None:
    try:
        import tinycudann  # noqa: F401
    except (ImportError, OSError) as e:
        return f"tinycudann is not importable ({type(e).__name__})"
    return None


def _make_tcnn_encoding(config: HashGridConfig) -> nn.Module:
    import tinycudann as tcnn

    return tcnn.Encoding(
        n_input_dims=3,
        encoding_config={
            "otype": "HashGrid",
            "n_levels": config.n_levels,
            "n_features_per_level": config.features_per_level,
            "log2_hashmap_size": config.log2_hashmap_size,
            "base_resolution": config.base_resolution,
            "per_level_scale": config.per_level_scale,
        },
    )
