"""What a field is to the renderers and stages: density and albedo at world points, and where its surface lies."""

from __future__ import annotations

import logging
from typing import Protocol

from torch import Tensor

from text3d.errors import TrainingError

log = logging.getLogger(__name__)


class Field(Protocol):
    """Density and albedo inside the cube ``[-radius, radius]^3`` (see :class:`text3d.field.nerf.HashGridField`)."""

    radius: float

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(sigma: [N], albedo: [N, 3])`` at world points ``x: [N, 3]``."""

    def density(self, x: Tensor) -> Tensor:
        """``sigma: [N]`` at ``x: [N, 3]``."""

    def albedo(self, x: Tensor) -> Tensor:
        """``rgb: [N, 3]`` in [0, 1] at ``x: [N, 3]``."""

    def density_and_normal(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(sigma: [N], albedo: [N, 3], normal: [N, 3])``; differentiable when gradients are enabled."""


def surface_level(lo: float, hi: float, level: float, what: str) -> float:
    """``level`` if densities in ``[lo, hi]`` cross it, else half the range (with a warning).

    A constant field has no surface at any level: that is an error, not a fallback.
    """
    if lo < level < hi:
        return level
    if hi - lo < 1e-6:
        raise TrainingError(f"{what}: the density field is constant ({lo:.3g}); there is no surface")
    fallback = 0.5 * (lo + hi)
    log.warning("%s: no surface at density %.3g (range %.3g..%.3g); using %.3g", what, level, lo, hi, fallback)
    return fallback
