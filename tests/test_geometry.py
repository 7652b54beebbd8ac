import math

import pytest
import torch
import trimesh

from text3d.geometry.marching_tets import marching_tets
from text3d.geometry.mesh import mesh_normals
from text3d.geometry.regularizers import laplacian_loss, laplacian_offsets, normal_consistency_loss
from text3d.geometry.tets import tet_grid


def signed_volumes(verts, tets):
    v = verts.double()[tets]
    return torch.linalg.det(v[:, 1:] - v[:, :1]) / 6.0


def sphere_mesh(resolution=24, r=0.6, dtype=torch.float32, shift=0.0):
    verts, tets = tet_grid(resolution, 1.0)
    verts = verts.to(dtype)
    sdf = (verts.norm(dim=-1) - r + shift).requires_grad_(True)
    vertices, faces = marching_tets(verts, sdf, tets)
    return verts, tets, sdf, vertices, faces


def plane_grid(n=5, fold=None):
    """A flat n x n vertex grid in z=0, each square cut along the same diagonal; ``fold`` lifts z = fold * |x|."""
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    x, y = i.double() - (n - 1) / 2, j.double()
    z = torch.zeros_like(x) if fold is None else fold * x.abs()
    vertices = torch.stack([x, y, z], dim=-1).reshape(-1, 3)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = torch.cat([torch.stack([a, b, c], -1).reshape(-1, 3), torch.stack([a, c, d], -1).reshape(-1, 3)])
    return vertices, faces


@pytest.mark.parametrize("n", [1, 3])
def test_tet_grid_counts_orientation_and_volume(n):
    r = 0.7
    verts, tets = tet_grid(n, r)
    assert verts.shape == ((n + 1) ** 3, 3) and verts.dtype == torch.float32
    assert tets.shape == (6 * n**3, 4) and tets.dtype == torch.int64
    assert verts.min().item() == pytest.approx(-r) and verts.max().item() == pytest.approx(r)
    vol = signed_volumes(verts, tets)
    assert torch.allclose(vol, torch.full_like(vol, (2 * r / n) ** 3 / 6))  # all positive, equal (Kuhn)
    assert vol.sum().item() == pytest.approx((2 * r) ** 3)


def test_tet_grid_faces_are_shared_by_two_tets_inside_and_one_on_the_boundary():
    n, r = 3, 1.0
    verts, tets = tet_grid(n, r)
    faces = tets[:, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]].reshape(-1, 3).sort(dim=-1).values
    unique, counts = torch.unique(faces, dim=0, return_counts=True)
    assert set(counts.tolist()) == {1, 2}
    assert (counts == 1).sum().item() == 12 * n**2  # two triangles per boundary square
    assert (counts == 2).sum().item() == (24 * n**3 - 12 * n**2) // 2
    # A face seen once lies in one of the cube's six boundary planes; a face seen twice does not.
    on_plane = ((verts[unique].abs() == r).all(dim=1)).any(dim=-1)
    assert torch.equal(on_plane, counts == 1)


def test_triangle_table_orients_every_case_outward_on_random_tets():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        verts = torch.randn(4, 3, generator=gen, dtype=torch.float64)
        tet = torch.tensor([[0, 1, 2, 3]])
        if signed_volumes(verts, tet).item() < 0:
            tet = tet[:, [0, 1, 3, 2]]
        for case in range(16):
            outside = torch.tensor([(case >> i) & 1 for i in range(4)], dtype=torch.bool)
            magnitude = torch.rand(4, generator=gen, dtype=torch.float64) + 0.1
            sdf = torch.zeros(4, dtype=torch.float64)
            sdf[tet[0]] = torch.where(outside, magnitude, -magnitude)
            vertices, faces = marching_tets(verts, sdf, tet)
            n_out = int(outside.sum())
            assert faces.shape[0] == (0 if n_out in (0, 4) else 2 if n_out == 2 else 1)
            for face in vertices[faces]:
                # The face's plane puts every outside corner on its normal's side and every inside corner opposite.
                normal = torch.linalg.cross(face[1] - face[0], face[2] - face[0], dim=-1)
                side = ((verts - face[0]) @ normal).sign()
                assert torch.equal(side > 0, sdf > 0)


def test_sphere_mesh_is_watertight_accurate_and_outward():
    resolution, r = 24, 0.6
    _, _, _, vertices, faces = sphere_mesh(resolution, r)
    assert faces.dtype == torch.int64 and faces.shape[0] > 1000
    mesh = trimesh.Trimesh(vertices.detach().numpy(), faces.numpy(), process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.euler_number == 2
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * r**3, rel=0.02)  # signed: inverted faces would be < 0
    cell = 2.0 / resolution
    assert (vertices.norm(dim=-1) - r).abs().max().item() < 0.08 * cell  # measured 0.05 cells
    vertex_normals, face_normals = mesh_normals(vertices, faces)
    radial = torch.nn.functional.normalize(vertices, dim=-1)
    assert (vertex_normals * radial).sum(-1).mean().item() > 0.99
    centroids = vertices[faces].mean(dim=1)
    assert (face_normals * torch.nn.functional.normalize(centroids, dim=-1)).sum(-1).min().item() > 0.8


def test_gradients_shrink_the_sphere_when_the_sdf_rises():
    verts, tets, sdf, vertices, _ = sphere_mesh(12, dtype=torch.float64)
    vertices.norm(dim=-1).mean().backward()
    grad = sdf.grad
    assert grad.abs().sum() > 0 and grad.sum() < 0
    assert (grad > 1e-12).sum() == 0  # raising any SDF value never moves the surface outward here
    # The summed gradient is the derivative w.r.t. a uniform shift of the SDF: compare with finite differences.
    eps = 1e-6
    with torch.no_grad():
        plus = marching_tets(verts, verts.norm(dim=-1) - 0.6 + eps, tets)[0].norm(dim=-1).mean()
        minus = marching_tets(verts, verts.norm(dim=-1) - 0.6 - eps, tets)[0].norm(dim=-1).mean()
    assert grad.sum().item() == pytest.approx(((plus - minus) / (2 * eps)).item(), rel=1e-4)
    assert grad.sum().item() == pytest.approx(-1.0, abs=0.1)  # mean radius follows r - shift


def test_vertex_position_matches_finite_differences_of_one_sdf_value():
    verts, tets = tet_grid(6, 1.0)
    verts = verts.double()
    sdf = verts.norm(dim=-1) - 0.55 + 0.02 * torch.sin(7 * verts).sum(-1)
    sdf_req = sdf.clone().requires_grad_(True)
    vertices, _ = marching_tets(verts, sdf_req, tets)
    k = vertices.shape[0] // 2
    jac = torch.stack([torch.autograd.grad(vertices[k, c], sdf_req, retain_graph=True)[0] for c in range(3)])  # [3, V]
    assert (jac.abs().sum(0) > 0).sum() == 2  # exactly the two endpoints of the vertex's grid edge
    eps = 1e-6
    for j in jac.abs().sum(0).nonzero()[:, 0]:
        plus, minus = sdf.clone(), sdf.clone()
        plus[j] += eps
        minus[j] -= eps
        fd = (marching_tets(verts, plus, tets)[0][k] - marching_tets(verts, minus, tets)[0][k]) / (2 * eps)
        assert torch.allclose(jac[:, j], fd, rtol=1e-5, atol=1e-9)
        assert fd.abs().max() > 0.01


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_sdf_without_a_sign_change_gives_an_empty_mesh(sign):
    verts, tets = tet_grid(4, 1.0)
    sdf = torch.full((verts.shape[0],), sign, requires_grad=True)
    vertices, faces = marching_tets(verts, sdf, tets)
    assert vertices.shape == (0, 3) and faces.shape == (0, 3) and faces.dtype == torch.int64
    assert laplacian_loss(vertices, faces).item() == 0.0
    assert normal_consistency_loss(vertices, faces).item() == 0.0
    vertex_normals, face_normals = mesh_normals(vertices, faces)
    assert vertex_normals.shape == (0, 3) and face_normals.shape == (0, 3)


def test_laplacian_is_zero_inside_a_flat_grid_and_exact_on_an_octahedron():
    vertices, faces = plane_grid(5)
    offsets = laplacian_offsets(vertices, faces).reshape(5, 5, 3)
    assert offsets[1:-1, 1:-1].abs().max() < 1e-12
    assert offsets[0, 0].abs().max() > 0.1  # boundary vertices are pulled inward
    # Regular octahedron: each vertex's 4 neighbours average to the origin, so every offset is the vertex itself.
    octa = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float64)
    octa.requires_grad_(True)
    faces = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    loss = laplacian_loss(octa, faces)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    # d/dv_k of mean_i |o_i|^2 = (2/6) (o_k - sum of the neighbours' o_i / 4) = (2/6) (v_k - 0) on the octahedron.
    assert torch.allclose(octa.grad, octa.detach() / 3)


def test_normal_consistency_is_zero_when_flat_and_one_minus_cos_when_folded():
    assert normal_consistency_loss(*plane_grid(5)).item() == pytest.approx(0.0, abs=1e-12)
    assert normal_consistency_loss(*plane_grid(5, fold=0.5)).item() > 0.01
    a = math.radians(60)
    vertices = torch.tensor(
        [[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -math.cos(a), math.sin(a)]], dtype=torch.float64, requires_grad=True
    )
    faces = torch.tensor([[0, 1, 2], [1, 0, 3]])  # one interior edge (0, 1), consistently wound
    loss = normal_consistency_loss(vertices, faces)
    assert loss.item() == pytest.approx(1 - math.cos(a))
    loss.backward()
    assert vertices.grad[3].abs().sum() > 0.1
    flipped = torch.tensor([[0, 1, 2], [0, 1, 3]])  # inconsistent winding reads as a full fold
    flat = vertices.detach().clone()
    flat[3] = torch.tensor([0.5, -1.0, 0.0], dtype=torch.float64)
    assert normal_consistency_loss(flat, flipped).item() == pytest.approx(2.0)


def test_vertex_normals_are_area_weighted():
    vertices = torch.tensor([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 3, 4]])  # area 2 facing +z, area 0.5 facing +x
    vertex_normals, face_normals = mesh_normals(vertices, faces)
    assert torch.allclose(face_normals, torch.tensor([[0.0, 0, 1], [1, 0, 0]], dtype=torch.float64))
    expected = torch.tensor([1.0, 0, 4], dtype=torch.float64) / math.sqrt(17)
    assert torch.allclose(vertex_normals[0], expected)
    assert torch.allclose(vertex_normals[1], torch.tensor([0.0, 0, 1], dtype=torch.float64))


def test_regularizers_backpropagate_through_marching_tets():
    _, _, sdf, vertices, faces = sphere_mesh(8)
    loss = laplacian_loss(vertices, faces) + normal_consistency_loss(vertices, faces)
    assert loss.item() > 0
    loss.backward()
    assert torch.isfinite(sdf.grad).all() and sdf.grad.abs().sum() > 0
