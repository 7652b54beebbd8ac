"""Differentiable marching tetrahedra (DMTet, Shen et al. 2021): a triangle mesh from an SDF on a tetrahedral grid.

Convention: ``sdf > 0`` is outside, ``sdf <= 0`` inside; triangles wind counter-clockwise seen from outside, so their
right-handed normals point outward (towards increasing SDF).
"""

from __future__ import annotations

import torch
from torch import Tensor

# The six edges of a tetrahedron, as pairs of its corners 0..3.
_TET_EDGES = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])

# Case = sum of 2^i over the outside corners i; each row holds up to two triangles as edge indices into _TET_EDGES
# (-1 pads). Derived on the reference tetrahedron (origin + unit axes) and oriented so each triangle's plane has the
# outside corners on its normal's side; that side is invariant under positively oriented affine maps and under where
# the zero crossings lie on their edges, so the table holds for every positively oriented tetrahedron.
_TRIANGLES = torch.tensor(
    [
        [-1, -1, -1, -1, -1, -1],  # outside: none
        [0, 2, 1, -1, -1, -1],  # outside: 0
        [0, 3, 4, -1, -1, -1],  # outside: 1
        [1, 3, 4, 1, 4, 2],  # outside: 0 1
        [1, 5, 3, -1, -1, -1],  # outside: 2
        [0, 5, 3, 0, 2, 5],  # outside: 0 2
        [0, 1, 5, 0, 5, 4],  # outside: 1 2
        [2, 5, 4, -1, -1, -1],  # outside: 0 1 2
        [2, 4, 5, -1, -1, -1],  # outside: 3
        [0, 4, 5, 0, 5, 1],  # outside: 0 3
        [0, 5, 2, 0, 3, 5],  # outside: 1 3
        [1, 3, 5, -1, -1, -1],  # outside: 0 1 3
        [1, 2, 4, 1, 4, 3],  # outside: 2 3
        [0, 4, 3, -1, -1, -1],  # outside: 0 2 3
        [0, 1, 2, -1, -1, -1],  # outside: 1 2 3
        [-1, -1, -1, -1, -1, -1],  # outside: all
    ]
)


def marching_tets(verts: Tensor, sdf: Tensor, tets: Tensor) -> tuple[Tensor, Tensor]:
    """The zero level set of ``sdf: [V]`` sampled at ``verts: [V, 3]`` of tetrahedra ``tets: [T, 4]`` (int64).

    Tetrahedra must be positively oriented (``det(v1 - v0, v2 - v0, v3 - v0) > 0``, as from ``tet_grid``) for the
    faces to face outward. Returns ``(vertices: [M, 3], faces: [K, 3] int64)``: one vertex per grid edge whose
    endpoints lie on opposite sides, shared by every tetrahedron around that edge (so the mesh is watertight inside
    the grid), at the linear zero crossing ``v_a + s_a / (s_a - s_b) * (v_b - v_a)`` — differentiable w.r.t. ``verts``
    and ``sdf``. An SDF that never changes sign gives ``[0, 3]`` tensors. An SDF that is exactly 0 at a vertex puts
    crossings on that vertex, which can make zero-area faces.
    """
    device = verts.device
    with torch.no_grad():  # topology only: which tetrahedra and edges are cut
        outside = sdf > 0  # [V]
        # The case index is built from uint8 bit planes: far cheaper than a [T, 4] int64 product over the whole grid.
        corner_outside = outside.to(torch.uint8)[tets]  # [T, 4]
        case = corner_outside[:, 0] | corner_outside[:, 1] << 1 | corner_outside[:, 2] << 2 | corner_outside[:, 3] << 3
        cut_tets = (case > 0) & (case < 15)
        tets, case = tets[cut_tets], case[cut_tets].long()  # [C, 4], [C]

        # Endpoints sorted so every tetrahedron names a shared edge the same way; one int64 key per edge for unique.
        edges = tets[:, _TET_EDGES.to(device)].reshape(-1, 2).sort(dim=-1).values  # [6C, 2]
        crossing = outside[edges[:, 0]] != outside[edges[:, 1]]
        n_verts = verts.shape[0]
        keys, vertex_of_crossing = torch.unique(edges[crossing, 0] * n_verts + edges[crossing, 1], return_inverse=True)
        edge_vertex = torch.full((edges.shape[0],), -1, dtype=torch.int64, device=device)
        edge_vertex[crossing] = vertex_of_crossing
        edge_vertex = edge_vertex.reshape(-1, 6)  # [C, 6] output vertex of each tet edge, -1 where not crossed

        local = _TRIANGLES.to(device)[case].reshape(-1, 2, 3)  # [C, 2, 3] tet-edge indices of up to 2 triangles
        has_face = local[..., 0] >= 0  # [C, 2]
        faces = torch.gather(edge_vertex[:, None, :].expand(-1, 2, -1), 2, local.clamp(min=0))[has_face]  # [K, 3]
        a, b = keys // n_verts, keys % n_verts  # [M] endpoints of each crossing edge

    # index_select (rather than advanced indexing) backpropagates with a plain index_add, much faster on CPU.
    s_a, s_b = sdf.index_select(0, a), sdf.index_select(0, b)
    v_a, v_b = verts.index_select(0, a), verts.index_select(0, b)
    # s_a and s_b have opposite signs (one strictly), so the denominator is never zero.
    t = (s_a / (s_a - s_b)).unsqueeze(-1)
    vertices = v_a + t.to(verts.dtype) * (v_b - v_a)
    return vertices, faces
