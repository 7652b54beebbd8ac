"""Occupancy grid for space skipping: samples in cells known to be empty are never sent to the field."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from text3d.renderer.config import OccupancyConfig

log = logging.getLogger(__name__)


class OccupancyGrid(nn.Module):
    """A ``[R, R, R]`` grid over ``[-radius, radius]^3`` holding a decayed running max of density per cell."""

    def __init__(self, config: OccupancyConfig, radius: float, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        self.radius = radius
        r = config.resolution
        self.register_buffer("density", torch.full((r, r, r), float("inf"), device=device))
        self.register_buffer("mask", torch.ones(r, r, r, dtype=torch.bool, device=device))

    def occupied(self, x: Tensor) -> Tensor:
        """``[N]`` bool: whether world points ``x: [N, 3]`` fall in an occupied cell (outside the cube: False)."""
        if not self.config.enabled:
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        r = self.config.resolution
        cell = ((x / self.radius + 1.0) * 0.5 * r).floor().long()
        inside = ((cell >= 0) & (cell < r)).all(dim=-1)
        cell = cell.clamp(0, r - 1)
        return inside & self.mask[cell[:, 0], cell[:, 1], cell[:, 2]]

    @torch.no_grad()
    def update(self, density_fn: Callable[[Tensor], Tensor], step_size: float, generator: torch.Generator) -> None:
        """Re-evaluate density at a random point in every cell and refresh the mask.

        ``step_size`` is the render step length used to turn density into per-step opacity.
        """
        c = self.config
        r = c.resolution
        dev = self.density.device
        idx = torch.stack(torch.meshgrid(*[torch.arange(r)] * 3, indexing="ij"), dim=-1).reshape(-1, 3)
        jitter = torch.rand(idx.shape, generator=generator)
        x = ((idx + jitter) / r * 2.0 - 1.0) * self.radius
        sigma = torch.cat([density_fn(chunk.to(dev)) for chunk in x.split(65536)]).reshape(r, r, r).float()
        previous = torch.where(torch.isinf(self.density), torch.zeros_like(sigma), self.density)
        self.density.copy_(torch.maximum(previous * c.decay, sigma))
        opaque = (1.0 - torch.exp(-self.density * step_size)) > c.threshold
        # Dilate by one cell: a sample may sit just outside the cell where the density was measured.
        mask = F.max_pool3d(opaque[None, None].float(), kernel_size=3, stride=1, padding=1)[0, 0] > 0
        if not mask.any():
            log.warning("occupancy grid: no occupied cell left; keeping every cell occupied")
            mask.fill_(True)
        self.mask.copy_(mask)

    @property
    def occupied_fraction(self) -> float:
        return self.mask.float().mean().item()
