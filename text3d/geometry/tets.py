"""A procedural tetrahedral grid: a regular cube lattice with every cube cut into six Kuhn (Freudenthal) tetrahedra."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


def _kuhn_corners() -> Tensor:
    """``[6, 4, 3]`` 0/1 corner offsets of the six tetrahedra of the unit cube, each positively oriented.

    Tetrahedron ``p`` walks from corner (0,0,0) to (1,1,1) stepping along the axes in the order of permutation ``p``;
    all six share the main diagonal. Every cube face is then cut along the diagonal through its lowest corner, the same
    in every cube, so neighbouring cubes' triangles match exactly.
    """
    tets = []
    for order in itertools.permutations(range(3)):
        corner = [0, 0, 0]
        path = [tuple(corner)]
        for axis in order:
            corner[axis] = 1
            path.append(tuple(corner))
        tets.append(path)
    corners = torch.tensor(tets, dtype=torch.int64)
    edges = (corners[:, 1:] - corners[:, :1]).double()
    # Odd permutations come out left-handed: swapping the last two corners flips them.
    flip = torch.linalg.det(edges) < 0
    corners[flip] = corners[flip][:, [0, 1, 3, 2]]
    return corners


def tet_grid(resolution: int, radius: float, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """A tetrahedral grid of the cube [-radius, radius]^3 with ``resolution`` cubes per axis.

    Returns ``verts: [(n+1)^3, 3]`` float32 (vertex ``(i, j, k)`` at flat index ``(i*(n+1) + j)*(n+1) + k``) and
    ``tets: [6 n^3, 4]`` int64, every tetrahedron with ``det(v1 - v0, v2 - v0, v3 - v0) > 0``. Tetrahedra sharing a
    face or edge index it with the same vertices, so marching tetrahedra on it yields a watertight mesh.
    """
    if resolution < 1:
        raise ValueError(f"tet_grid: resolution must be >= 1, got {resolution}")
    n = resolution
    axis = torch.linspace(-radius, radius, n + 1, dtype=torch.float32, device=device)
    verts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    stride = torch.tensor([(n + 1) ** 2, n + 1, 1], dtype=torch.int64, device=device)
    cube = torch.arange(n, device=device)
    # Flat indices as sums of products: CUDA has no integer matmul.
    lowest = (torch.stack(torch.meshgrid(cube, cube, cube, indexing="ij"), dim=-1).reshape(-1, 3) * stride).sum(-1)
    offsets = (_kuhn_corners().to(device) * stride).sum(-1)  # [6, 4]
    tets = (lowest[:, None, None] + offsets).reshape(-1, 4)
    return verts, tets
