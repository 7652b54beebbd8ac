"""The coarse field's density priors, and the surfaces taken from its density."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import trimesh

from text3d.export.config import IsosurfaceConfig
from text3d.export.isosurface import extract_mesh
from text3d.field.base import opacity_level, surface_grid
from text3d.field.config import FieldConfig, HashGridConfig
from text3d.field.nerf import HashGridField
from text3d.stage.geometry import DMTet


def test_density_radius_bounds_the_field_where_learning_cannot_undo_it():
    torch.manual_seed(0)
    config = FieldConfig(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10, init_scale=1.0, backend="torch"),
                         blob_density=0.0)
    free = HashGridField(config)
    bounded = HashGridField(replace(config, density_radius=0.8))
    bounded.load_state_dict(free.state_dict())
    directions = F.normalize(torch.randn(200, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    for radius, kept in ((0.5, 1.0), (0.71, 1.0), (0.76, 0.5), (0.85, 0.0), (1.5, 0.0)):  # fades over 0.72 .. 0.8
        x = directions * radius
        torch.testing.assert_close(bounded.density(x), free.density(x) * kept)
    assert (free.density(directions * 0.85) > 0).all()  # the bound, not the field, is what zeroes it
    bounded.density(directions * 0.85).sum().backward()
    assert bounded.encoding.table.grad.abs().sum() == 0  # nothing out there can be learnt back


class ShellField(torch.nn.Module):
    """A hollow ball: density 50 between radii 0.35 and 0.6, ramping over 0.05 at each wall, empty inside;
    optionally bored through along z, and with a speck (a small dense cube) at ``speck``."""

    radius = 1.0

    def __init__(self, bore: float = 0.0, speck: tuple[float, float, float] | None = None) -> None:
        super().__init__()
        self.bore, self.speck = bore, speck
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # where the extractor finds the device

    def density(self, x):
        r = x.norm(dim=-1)
        depth = torch.minimum(r - 0.35, 0.6 - r)
        if self.bore:
            depth = torch.minimum(depth, x[:, :2].norm(dim=-1) - self.bore)
        sigma = 50.0 * (depth / 0.05).clamp(0.0, 1.0)
        if self.speck is not None:
            sigma = torch.where((x - torch.tensor(self.speck)).abs().amax(dim=-1) < 0.05, 50.0, sigma)
        return sigma + 0.0 * self.anchor

    def albedo(self, x):
        return torch.full_like(x, 0.5)


def shell_grid(n=33, **shape):
    axis = torch.linspace(-1, 1, n)
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    return pts.norm(dim=-1).reshape(n, n, n).numpy(), ShellField(**shape).density(pts).reshape(n, n, n).detach().numpy()


def test_surface_grid_fills_an_enclosed_pocket_and_mirrors_it_above_the_level():
    r, grid = shell_grid()
    cleaned, level = surface_grid(grid, 2 / 32, 10.0, "test")
    assert level == 10.0
    assert (grid[r < 0.3] == 0).all() and (cleaned[r < 0.3] == 20.0).all()  # 2 * level - 0
    assert (cleaned[r < 0.58] >= 10.0).all()
    np.testing.assert_array_equal(cleaned[r > 0.37], grid[r > 0.37])  # the shell and the outside untouched


def test_surface_grid_keeps_a_pocket_open_to_the_outside():
    _, grid = shell_grid(bore=0.2)  # a tunnel through the shell joins the hollow to the outside, like a torus hole
    np.testing.assert_array_equal(surface_grid(grid, 2 / 32, 10.0, "test")[0], grid)


def test_surface_grid_drops_a_floating_speck_but_not_a_part_of_one_percent():
    _, grid = shell_grid(n=65, speck=(0.0, 0.0, 0.85))  # 27 cells against the shell's ~18000
    cleaned, _ = surface_grid(grid, 2 / 64, 10.0, "test")
    speck = grid >= 10.0
    speck[:, :, :56] = False
    assert speck.sum() == 27 and (cleaned[speck] == -30.0).all()  # mirrored below: 2 * 10 - 50
    large = np.zeros_like(grid)
    large[10:20, 10:20, 10:20] = 50.0  # 1000 cells, a second object away from the first
    np.testing.assert_array_equal(surface_grid(grid + large, 2 / 64, 10.0, "test")[0][large > 0], 50.0)


def test_opacity_level_matches_the_silhouettes_of_a_fog():
    # A fog of density 3 inside radius 0.5 with sparse denser grains: a unit of depth renders it opaque, and at the
    # grains' level (20) the surface would be shreds.
    r, _ = shell_grid(n=65)
    grains = np.random.default_rng(0).random(r.shape) < 0.1
    fog = np.where(r < 0.5, np.where(grains, 20.0, 3.0), 0.0)
    level = opacity_level(fog, 2 / 64)
    assert 0.1 < level < 3.0  # the middle of the levels that all cast the ball
    assert opacity_level(np.zeros_like(fog) + 1e-3, 2 / 64) is None  # nowhere opaque


def test_isosurface_of_a_hollow_field_has_no_inner_surface():
    mesh = extract_mesh(ShellField(), IsosurfaceConfig(resolution=48, threshold=10.0))
    assert mesh.is_watertight and mesh.euler_number == 2  # one closed surface, not two nested ones
    assert mesh.area == pytest.approx(4 * math.pi * 0.59**2, rel=0.05)  # the outer sphere's (both: 1.36x that)
    assert np.linalg.norm(mesh.vertices, axis=1).min() > 0.55


def test_isosurface_at_the_opacity_level_of_a_fog_is_one_ball():
    class Fog(ShellField):
        def density(self, x):
            grain = torch.sin(40 * x).prod(dim=-1) > 0.5  # dense specks through a thin fog
            return torch.where(x.norm(dim=-1) < 0.5, torch.where(grain, 20.0, 3.0), 0.0) + 0.0 * self.anchor

    fixed = extract_mesh(Fog(), IsosurfaceConfig(resolution=48, threshold=10.0))
    matched = extract_mesh(Fog(), IsosurfaceConfig(resolution=48))
    assert len(fixed.split(only_watertight=False)) > 10  # the grains, each its own piece
    assert matched.is_watertight and matched.euler_number == 2
    assert np.linalg.norm(matched.vertices, axis=1) == pytest.approx(0.5, abs=0.05)


def test_dmtet_from_a_hollow_field_starts_solid():
    dmtet = DMTet(resolution=24, radius=1.0, deform_scale=0.0)
    dmtet.init_from_density(ShellField().density, 10.0)
    mesh = dmtet.mesh()
    surface = trimesh.Trimesh(mesh.vertices.detach().numpy(), mesh.faces.numpy())
    assert surface.is_watertight and surface.euler_number == 2
    assert surface.volume == pytest.approx(4 / 3 * math.pi * 0.59**3, rel=0.05)  # solid; the shell alone: 0.79x
    assert mesh.vertices.detach().norm(dim=-1).min() > 0.55
