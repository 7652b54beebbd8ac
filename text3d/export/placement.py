"""Where an exported asset stands: glTF's axes (see :mod:`text3d.renderer.axes`: +Y up, front +Z), a real height
in metres, and an origin on the ground.

A file's vertices are the world's rotated into glTF's axes, scaled uniformly to the wanted height, and shifted so
that the origin is at the bottom centre (or the centre) of their bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from text3d.renderer.axes import world_to_file

Origin = Literal["bottom", "center"]


@dataclass(frozen=True)
class Placement:
    """A similarity transform from the world into a file's frame: rotate, scale uniformly, shift."""

    scale: float
    offset: np.ndarray
    """[3] added after the rotation and the scale, in the file's frame."""

    def points(self, world: np.ndarray) -> np.ndarray:
        """``world: [N, 3]`` positions -> ``[N, 3]`` in the file's frame."""
        return world_to_file(world) * self.scale + self.offset

    def directions(self, world: np.ndarray) -> np.ndarray:
        """``world: [N, 3]`` unit directions (normals) -> ``[N, 3]`` in the file's frame (the scale is uniform)."""
        return world_to_file(world)


def place(world_vertices: np.ndarray, height_m: float, origin: Origin) -> Placement:
    """The placement of a mesh with ``world_vertices: [V, 3]``: ``height_m`` tall along the file's +Y (0: the world's
    units kept), with the origin at its bounding box's bottom centre (``bottom``: it stands on y = 0) or centre."""
    rotated = world_to_file(world_vertices)
    lo, hi = rotated.min(0), rotated.max(0)
    height = hi[1] - lo[1]
    scale = height_m / height if height_m > 0 and height > 0 else 1.0
    anchor = (lo + hi) / 2
    if origin == "bottom":
        anchor[1] = lo[1]
    return Placement(scale, -anchor * scale)
