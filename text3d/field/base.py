"""What a field is to the renderers and stages: density and albedo at world points, and where its surface lies."""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
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


def opacity_level(density: np.ndarray, spacing: float) -> float | None:
    """The density level whose surface casts the field's own silhouettes; None where the field is nowhere opaque.

    ``density: [R, R, R]`` on a grid ``spacing`` apart. Seen along each grid axis, the field's rendered opacity is
    ``1 - exp(-sum(sigma) * spacing)`` and a surface at level ``L`` covers the rays whose largest density reaches
    ``L``; the level kept is the one whose three silhouettes best overlap (intersection over union) the opacity of
    0.5 or more (of 64 levels spaced evenly in log up to the largest density; the middle one where several tie).
    A fixed level fails either way on SDS fields: their density is a thin fog wherever one unit of depth already
    renders opaque, so a high level cuts the object into shreds and floaters, a low one wraps fog.
    """
    seen = [(1.0 - np.exp(-density.sum(axis=a) * spacing) >= 0.5, density.max(axis=a)) for a in range(3)]
    if not any(opaque.any() for opaque, _ in seen):
        return None
    levels = np.geomspace(1e-3, 1.0, 64) * float(density.max())
    overlap = [sum((o & (m >= lv)).sum() for o, m in seen) / sum((o | (m >= lv)).sum() for o, m in seen)
               for lv in levels]
    best = np.flatnonzero(np.asarray(overlap) >= max(overlap) - 0.002)  # a plateau: its middle, away from both edges
    return float(levels[best[len(best) // 2]])


def surface_grid(density: np.ndarray, spacing: float, level: float | None, what: str) -> tuple[np.ndarray, float]:
    """``density: [R, R, R]`` made ready for marching, and its level (``None``: :func:`opacity_level`).

    The level falls back as in :func:`surface_level`. Enclosed empty pockets are then mirrored above the level
    (``2 level - d``) and specks below it: no camera sees a pocket that no path of empty cells joins to the grid's
    border, so the renders never fill it, and its walls would be surfaces inside the object (in the mesh, its
    texture atlas and any distance to it); a speck (a connected part under 1 % of the largest one's cells) is a
    floater, and it would also set the asset's bounds. The mirror keeps values continuous, so the surface there
    simply goes.
    """
    from scipy import ndimage

    lo, hi = float(density.min()), float(density.max())
    if level is None:
        level = opacity_level(density, spacing)
        if level is None:
            log.warning("%s: the field is nowhere opaque; taking the surface at half its density range", what)
        else:
            log.info("%s: density level %.3g matches the field's opacity", what, level)
    level = surface_level(lo, hi, 0.5 * (lo + hi) if level is None else level, what)
    above = density >= level
    inside = ndimage.binary_fill_holes(above)
    parts, n = ndimage.label(inside, structure=np.ones((3, 3, 3)))
    if n > 1:
        cells = np.bincount(parts.ravel())[1:]
        inside &= np.isin(parts, 1 + np.flatnonzero(cells >= 0.01 * cells.max()))
    flip = inside != above
    return np.where(flip, 2.0 * level - density, density), level
