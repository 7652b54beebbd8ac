"""Image and geometry metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB per image, for ``[B, H, W, C]`` images in [0, 1]; returns ``[B]``."""
    mse = (pred - target).square().flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp(min=1e-10))
