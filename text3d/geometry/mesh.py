"""Triangle-mesh helpers shared by the geometry stage and its regularisers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def face_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Unit normals ``[K, 3]`` of triangles ``faces: [K, 3]`` over ``vertices: [M, 3]``, right-handed (counter-clockwise
    seen from the side the normal points to); degenerate triangles get a zero normal."""
    return F.normalize(_face_cross(vertices, faces), dim=-1, eps=1e-20)


def mesh_normals(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """``(vertex_normals: [M, 3], face_normals: [K, 3])``, unit length, for ``vertices: [M, 3]``, ``faces: [K, 3]``.

    Vertex normals average the adjacent faces' normals weighted by face area (a vertex on no face gets zero).
    """
    cross = _face_cross(vertices, faces)  # length = 2 * area, so summing it weights by area
    summed = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), cross.repeat_interleave(3, dim=0))
    return F.normalize(summed, dim=-1, eps=1e-20), F.normalize(cross, dim=-1, eps=1e-20)


def unique_edges(faces: Tensor) -> Tensor:
    """Undirected edges ``[E, 2]`` (smaller index first, sorted) of triangles ``faces: [K, 3]``."""
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).sort(dim=-1).values
    if edges.numel() == 0:
        return edges
    # One int64 key per edge: a 1-D unique is much faster than unique(dim=0) on rows.
    m = int(edges.max()) + 1
    keys = torch.unique(edges[:, 0] * m + edges[:, 1])
    return torch.stack([keys // m, keys % m], dim=-1)


def _face_cross(vertices: Tensor, faces: Tensor) -> Tensor:
    """``[K, 3]`` cross products (v1 - v0) x (v2 - v0) of the triangles."""
    v0, v1, v2 = vertices[faces].unbind(dim=1)
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)
