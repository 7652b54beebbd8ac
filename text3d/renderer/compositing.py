"""Volume-rendering weights of packed rays (nerfacc's ``render_weight_from_density``), in torch or on CUDA.

Samples are packed ray by ray: ``packed_info: [R, 2]`` int32 holds each ray's first sample and sample count, and
the samples of a ray are in front-to-back order. With ``s_i = sigma_i * delta_i`` along one ray,
``w_i = (1 - exp(-s_i)) * exp(-sum_{j<i} s_j)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from text3d import kernels
from text3d.backends import select_backend

Backend = Literal["auto", "torch", "cuda"]


def pack_info(counts: Tensor) -> Tensor:
    """``[R, 2]`` int32 (first sample, count) of rays with ``counts: [R]`` samples each, packed in ray order."""
    counts = counts.to(torch.int32)
    starts = torch.cumsum(counts, 0, dtype=torch.int32) - counts
    return torch.stack([starts, counts], dim=-1)


def render_weight_from_density(
    sigmas: Tensor, deltas: Tensor, packed_info: Tensor, backend: Backend = "auto"
) -> Tensor:
    """Weights ``[M]`` of packed samples with densities ``sigmas: [M]`` over intervals ``deltas: [M]`` (float32).

    The rays' sample ranges must lie within ``[0, M)`` (not checked here, as that would wait for the device; the
    kernel skips a ray whose range does not). Differentiable in ``sigmas`` and ``deltas``. ``backend``: "torch"
    (the reference, any device), "cuda" (text3d's kernel) or "auto" (the kernel on CUDA when it builds, see
    :func:`text3d.backends.select_backend`).
    """
    for name, t in (("sigmas", sigmas), ("deltas", deltas)):
        if not isinstance(t, Tensor) or t.dtype != torch.float32 or t.dim() != 1:
            raise ValueError(f"{name}: expected a float32 tensor [M], got {_describe(t)}")
    if deltas.shape != sigmas.shape:
        raise ValueError(f"deltas: shape {list(deltas.shape)} does not match sigmas' {list(sigmas.shape)}")
    if not isinstance(packed_info, Tensor) or packed_info.dtype != torch.int32 or packed_info.dim() != 2 or (
        packed_info.shape[1] != 2
    ):
        raise ValueError(f"packed_info: expected an int32 tensor [R, 2], got {_describe(packed_info)}")
    for name, t in (("deltas", deltas), ("packed_info", packed_info)):
        if t.device != sigmas.device:
            raise ValueError(f"{name}: is on {t.device}, but sigmas is on {sigmas.device}")
    if select_backend("volume compositing", backend, sigmas.device, {"cuda": kernels.problem}) == "cuda":
        return kernels.render_weight_from_density(sigmas, deltas, packed_info)
    return _weights_torch(sigmas, deltas, packed_info)


def _weights_torch(sigmas: Tensor, deltas: Tensor, packed_info: Tensor) -> Tensor:
    """The reference: samples scattered into a padded ``[R, S_max]`` grid, an exclusive cumulative sum per ray."""
    starts, counts = packed_info.long().unbind(-1)
    n_rays, n = counts.shape[0], sigmas.shape[0]
    ray = torch.repeat_interleave(torch.arange(n_rays, device=sigmas.device), counts, output_size=n)
    slot = torch.arange(n, device=sigmas.device) - starts[ray]
    width = int(counts.max()) if n_rays else 0
    s = sigmas * deltas
    padded = s.new_zeros(n_rays, width).index_put((ray, slot), s)
    before = (torch.cumsum(padded, dim=1) - padded)[ray, slot]  # optical depth in front of each sample
    return -torch.expm1(-s) * torch.exp(-before)


def _describe(t: object) -> str:
    return f"{t.dtype} {list(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
