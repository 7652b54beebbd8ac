"""Hash-grid encoding on CUDA (``cuda/hashgrid.cu``): forward, backward and double backward as autograd Functions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from text3d.kernels._backend import load

FEATURES = (1, 2, 4, 8)
MAX_LEVELS = 32


def hash_encode(x: Tensor, table: Tensor, resolutions: Sequence[int], table_size: int) -> Tensor:
    """Encode ``x: [N, 3]`` float32 (the unit cube; clamped) with ``table: [L * table_size, F]`` float32 or float16.

    Level ``l`` has ``resolutions[l]`` cells per axis; the layout, hashing and dense coarse levels are those of
    :class:`text3d.field.hashgrid.HashGridEncoding`. Returns ``[N, L * F]`` in the table's dtype, differentiable in
    ``x`` and ``table`` twice (normals from density gradients can be trained).
    """
    if not isinstance(x, Tensor) or x.dtype != torch.float32 or x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"x: expected a float32 tensor [N, 3], got {describe(x)}")
    if not isinstance(table, Tensor) or table.dtype not in (torch.float32, torch.float16) or table.dim() != 2:
        raise ValueError(f"table: expected a float32 or float16 tensor [L * T, F], got {describe(table)}")
    if x.device.type != "cuda" or table.device != x.device:
        raise ValueError(f"x and table must be on one CUDA device, got {x.device} and {table.device}")
    check_grid(table, resolutions, table_size)
    grid = ([int(r) for r in resolutions], int(table_size))
    return _Encode.apply(x.contiguous(), table.contiguous(), grid)


def check_grid(table: Tensor, resolutions: Sequence[int], table_size: int) -> None:
    """ValueError unless ``table: [L * table_size, F]`` fits the kernels: 1 to 32 levels, a power-of-two table size,
    F in :data:`FEATURES`."""
    levels = len(resolutions)
    if not 1 <= levels <= MAX_LEVELS or any(int(r) < 1 for r in resolutions):
        raise ValueError(f"resolutions: expected 1 to {MAX_LEVELS} positive ints, got {list(resolutions)}")
    if table_size < 1 or table_size & (table_size - 1) or table.shape[0] != levels * table_size:
        raise ValueError(f"table: expected {levels} levels x table_size rows (a power of two), got {table.shape[0]} "
                         f"rows with table_size {table_size}")
    if table.shape[1] not in FEATURES:
        raise ValueError(f"table: features per level must be one of {FEATURES}, got {table.shape[1]}")


class _Encode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, grid: tuple[list[int], int]) -> Tensor:
        ctx.save_for_backward(x, table)
        ctx.grid = grid
        return load().hashgrid_forward(x, table, *grid)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, table = ctx.saved_tensors
        want_x, want_table = ctx.needs_input_grad[:2]
        grad_x, grad_table = _EncodeBackward.apply(grad_out.contiguous(), x, table, ctx.grid, want_x, want_table)
        return (grad_x if want_x else None), (grad_table if want_table else None), None


class _EncodeBackward(torch.autograd.Function):
    """(grad_out, x, table) -> (grad_x [N, 3] float32, grad_table in the table's dtype); differentiable once more."""

    @staticmethod
    def forward(ctx, grad_out, x, table, grid, want_x: bool, want_table: bool):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(grad_out, x, table)
        ctx.grid = grid
        ctx.want = (want_x, want_table)
        grad_table32, grad_x = load().hashgrid_backward(x, table, grad_out, *grid, want_table, want_x)
        grad_x = grad_x if want_x else x.new_zeros(0)
        grad_table = grad_table32.to(table.dtype) if want_table else table.new_zeros(0)
        return grad_x, grad_table

    @staticmethod
    @once_differentiable
    def backward(ctx, ggx, ggt):
        grad_out, x, table = ctx.saved_tensors
        need_g, need_x, need_table = ctx.needs_input_grad[:3]
        ggx = ggx.float().contiguous() if ggx is not None and ctx.want[0] else None
        ggt = ggt.float().contiguous() if ggt is not None and ctx.want[1] else None
        if ggx is None and ggt is None:
            return None, None, None, None, None, None
        dg, dtable32, dx = load().hashgrid_double_backward(
            x, table, grad_out, ggx, ggt, *ctx.grid, bool(need_table and ggx is not None), bool(need_x)
        )
        dg = dg.to(grad_out.dtype) if need_g else None
        dtable = dtable32.to(table.dtype) if need_table and ggx is not None else None
        return dg, (dx if need_x else None), dtable, None, None, None


def describe(t: object) -> str:
    if isinstance(t, Tensor):
        return f"{t.dtype} {list(t.shape)} on {t.device}"
    return type(t).__name__
