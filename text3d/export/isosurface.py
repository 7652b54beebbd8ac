"""Coarse mesh from a density field: marching cubes on a grid, vertex colours from the albedo."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import trimesh

from text3d.export.config import ExportConfig, IsosurfaceConfig
from text3d.export.placement import place
from text3d.field.base import surface_grid
from text3d.io import atomic_path

log = logging.getLogger(__name__)


@torch.no_grad()
def density_grid(field, resolution: int, chunk: int = 65536) -> np.ndarray:
    """Density sampled at ``resolution^3`` grid points over the field's cube: ``[R, R, R]`` indexed (x, y, z)."""
    r = field.radius
    axis = torch.linspace(-r, r, resolution)
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    device = next(field.parameters()).device
    sigma = torch.cat([field.density(p.to(device)).float().cpu() for p in pts.split(chunk)])
    return sigma.reshape(resolution, resolution, resolution).numpy()


@torch.no_grad()
def extract_mesh(field, config: IsosurfaceConfig) -> trimesh.Trimesh:
    """A vertex-coloured mesh of the field's iso-surface, in world units: at ``threshold``, or (None) at the level
    matched to the field's opacity, without inner pockets or floating specks (:func:`text3d.field.base.surface_grid`).

    When nothing crosses the configured level (an all-empty or all-full grid), the level falls back to half
    the grid's density range, with a warning; a grid without any variation is an error.
    """
    from skimage.measure import marching_cubes

    spacing = 2.0 * field.radius / (config.resolution - 1)
    grid, level = surface_grid(density_grid(field, config.resolution), spacing, config.threshold, "isosurface")
    verts, faces, normals, _ = marching_cubes(grid, level=level, spacing=(spacing,) * 3)
    verts = verts - field.radius
    device = next(field.parameters()).device
    v = torch.from_numpy(verts.astype(np.float32))
    colors = torch.cat([field.albedo(p.to(device)).float().cpu() for p in v.split(65536)])
    rgba = np.concatenate([colors.numpy(), np.ones((len(verts), 1), np.float32)], axis=1)
    return trimesh.Trimesh(
        vertices=verts, faces=faces, vertex_normals=normals, vertex_colors=(rgba * 255).round().astype(np.uint8),
        process=False,
    )


def write_mesh(mesh: trimesh.Trimesh, path: Path, config: ExportConfig) -> None:
    """Write the world-frame ``mesh`` atomically, placed as ``config`` says (glTF axes, height, origin; see
    :mod:`text3d.export.placement`); the format follows the suffix (.glb, .obj, .ply)."""
    placement = place(mesh.vertices, config.height_m, config.origin)
    placed = trimesh.Trimesh(placement.points(mesh.vertices), mesh.faces,
                             vertex_normals=placement.directions(mesh.vertex_normals), visual=mesh.visual.copy(),
                             process=False)
    with atomic_path(path) as tmp:
        placed.export(tmp, file_type=path.suffix.lstrip("."))
