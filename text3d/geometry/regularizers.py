"""Smoothness losses on triangle meshes, as used to regularise DMTet surfaces."""

from __future__ import annotations

import torch
from torch import Tensor

from text3d.geometry.mesh import face_normals, unique_edges


def laplacian_offsets(vertices: Tensor, faces: Tensor) -> Tensor:
    """Uniform Laplacian ``[M, 3]``: each vertex minus the mean of its edge neighbours (0 for a vertex on no face)."""
    edges = unique_edges(faces)  # [E, 2]
    a, b = edges.unbind(dim=-1)
    neighbour_sum = torch.zeros_like(vertices).index_add(0, a, vertices[b]).index_add(0, b, vertices[a])
    ones = torch.ones(edges.shape[0], dtype=vertices.dtype, device=vertices.device)
    degree = torch.zeros(vertices.shape[0], dtype=vertices.dtype, device=vertices.device)
    degree = degree.index_add(0, a, ones).index_add(0, b, ones)
    offsets = vertices - neighbour_sum / degree.clamp(min=1).unsqueeze(-1)
    return torch.where((degree > 0).unsqueeze(-1), offsets, torch.zeros_like(offsets))


def laplacian_loss(vertices: Tensor, faces: Tensor) -> Tensor:
    """Mean over vertices on some face of the squared distance to their neighbours' mean; a scalar, 0 without faces."""
    used = torch.zeros(vertices.shape[0], dtype=torch.bool, device=vertices.device)
    used[faces.reshape(-1)] = True
    if not used.any():
        return vertices.sum() * 0.0  # keeps the graph, so a summed loss still backpropagates
    return laplacian_offsets(vertices, faces)[used].pow(2).sum(dim=-1).mean()


def normal_consistency_loss(vertices: Tensor, faces: Tensor) -> Tensor:
    """Mean over interior edges (exactly two adjacent faces) of 1 - cos of the angle between the faces' normals.

    Assumes consistent winding (as from ``marching_tets``); a scalar, 0 when there is no interior edge.
    """
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).sort(dim=-1).values  # [3K, 2], edge j of face j // 3
    if edges.numel() == 0:
        return vertices.sum() * 0.0
    m = vertices.shape[0]
    keys, order = (edges[:, 0] * m + edges[:, 1]).sort()
    _, counts = torch.unique_consecutive(keys, return_counts=True)
    first = torch.cumsum(counts, dim=0) - counts  # position of each edge's first half-edge in the sorted order
    pair = first[counts == 2]
    if pair.numel() == 0:
        return vertices.sum() * 0.0
    normals = face_normals(vertices, faces)
    cos = (normals[order[pair] // 3] * normals[order[pair + 1] // 3]).sum(dim=-1)
    return (1.0 - cos).mean()
