"""Volume-rendering weights of packed rays on CUDA (``cuda/volume.cu``) as an autograd Function."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from text3d.kernels._backend import load


def render_weight_from_density(sigmas: Tensor, deltas: Tensor, packed_info: Tensor) -> Tensor:
    """Weights ``[M]`` of samples packed ray by ray (``packed_info: [R, 2]`` int32 = first sample, count).

    ``w_i = (1 - exp(-sigma_i delta_i)) * exp(-sum_{j<i} sigma_j delta_j)`` along each ray; differentiable in
    ``sigmas`` and ``deltas`` (float32, CUDA). Inputs are checked by the public op in
    :mod:`text3d.renderer.compositing`.
    """
    return _Weights.apply(sigmas.contiguous(), deltas.contiguous(), packed_info.contiguous())


class _Weights(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigmas: Tensor, deltas: Tensor, packed_info: Tensor) -> Tensor:
        weights, trans = load().composite_forward(sigmas, deltas, packed_info)
        ctx.save_for_backward(sigmas, deltas, packed_info, weights, trans)
        return weights

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_weights: Tensor):
        sigmas, deltas, packed_info, weights, trans = ctx.saved_tensors
        want_sigma, want_delta = ctx.needs_input_grad[:2]
        grad_sigma, grad_delta = load().composite_backward(
            sigmas, deltas, packed_info, weights, trans, grad_weights.float().contiguous(), want_sigma, want_delta
        )
        return (grad_sigma if want_sigma else None), (grad_delta if want_delta else None), None
