"""Geometry stage: DMTet (learnable SDF + deformation on a tetrahedral grid) refined through the rasterizer."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from text3d.errors import TrainingError
from text3d.field.base import surface_grid
from text3d.geometry.marching_tets import marching_tets
from text3d.geometry.regularizers import laplacian_loss, normal_consistency_loss
from text3d.geometry.tets import tet_grid
from text3d.guide.base import Guide
from text3d.renderer.cameras import Cameras, ViewSampler
from text3d.renderer.lighting import random_light_dirs
from text3d.renderer.mesh import Mesh, MeshRenderer
from text3d.stage.base import GuidedStage
from text3d.stage.config import MESH_SHADINGS, GeometryConfig


class DMTet(nn.Module):
    """A tetrahedral grid with a learnable SDF (negative inside) and bounded per-vertex deformation."""

    def __init__(self, resolution: int, radius: float, deform_scale: float, device=None) -> None:
        super().__init__()
        verts, tets = tet_grid(resolution, radius, device=device)
        self.lattice = (resolution + 1,) * 3  # grid_verts as a lattice, indexed (x, y, z)
        self.spacing = 2.0 * radius / resolution
        self.register_buffer("grid_verts", verts)
        self.register_buffer("tets", tets)
        self.max_offset = deform_scale * self.spacing
        self.sdf = nn.Parameter(torch.zeros(verts.shape[0], device=device))
        self.deform = nn.Parameter(torch.zeros_like(verts))

    def mesh(self) -> Mesh:
        """The current surface (differentiable in ``sdf`` and ``deform``)."""
        verts = self.grid_verts + self.max_offset * torch.tanh(self.deform)
        vertices, faces = marching_tets(verts, self.sdf, self.tets)
        return Mesh(vertices, faces)

    @torch.no_grad()
    def init_from_density(self, density_fn, iso_level: float | None) -> None:
        """Set the SDF from a density field so its zero level set is the ``iso_level`` surface (None: the level
        matched to the field's opacity).

        The SDF is ``tanh((iso - density) / iso)``: negative inside, roughly linear near the surface, bounded
        far away so no vertex dominates the optimiser. Inner pockets and floating specks are cleared first
        (:func:`text3d.field.base.surface_grid`): the rasterizer never sees a pocket, so its walls would stay inner
        surfaces to the end. Falls back to half the density range (logged) when no grid vertex is on each side of
        the level; a constant field is an error.
        """
        density = torch.cat([density_fn(chunk) for chunk in self.grid_verts.split(65536)]).float()
        grid, iso_level = surface_grid(density.cpu().numpy().reshape(self.lattice), self.spacing, iso_level, "geometry")
        density = torch.from_numpy(grid.reshape(-1)).to(density)
        self.sdf.copy_(torch.tanh((iso_level - density) / iso_level))


class GeometryStage(GuidedStage):
    """Implements the trainer's ``Stage`` protocol for DMTet; albedo comes from a frozen field."""

    name = "geometry"

    def __init__(
        self,
        config: GeometryConfig,
        guide: Guide,
        sample_views: ViewSampler,
        eval_cameras: Cameras,
        albedo_field: nn.Module,
        radius: float,
        renderer: MeshRenderer,
        device: torch.device,
        seed: int,
    ) -> None:
        super().__init__(config, guide, sample_views, eval_cameras, device, seed)
        self.albedo_field = albedo_field.requires_grad_(False)
        self.renderer = renderer
        self.dmtet = DMTet(config.tet_resolution, radius, config.deform_scale, device=device)
        self.dmtet.init_from_density(albedo_field.density, config.iso_level)
        self.loss_weights = {
            **guide.loss_weights,
            "loss_normal_consistency": config.lambda_normal_consistency,
            "loss_laplacian": config.lambda_laplacian,
        }

    def modules(self) -> dict[str, nn.Module]:
        return {"dmtet": self.dmtet}

    def param_groups(self) -> list[dict]:
        c = self.config
        return [
            {"params": [self.dmtet.sdf], "lr": c.lr_sdf, "name": "sdf"},
            {"params": [self.dmtet.deform], "lr": c.lr_deform, "name": "deform"},
        ]

    def mesh(self) -> Mesh:
        mesh = self.dmtet.mesh()
        if mesh.faces.shape[0] == 0:
            raise TrainingError(
                "geometry: the surface vanished (empty mesh); lower geometry.lr_sdf and geometry.lr_deform (or "
                "geometry.iso_level) and continue with --resume and the new values"
            )
        return mesh

    def training_step(self, step: int) -> dict[str, Tensor]:
        mesh = self.mesh()
        cameras = self.sample_views(self.generator).to(self.device)
        shading = self.draw(self.config.shading, self.config.shading_probs, MESH_SHADINGS)
        light = random_light_dirs(cameras, self.generator) if shading in ("lambertian", "textureless") else None
        renders = self.renderer.render(mesh, cameras, self.albedo_field.albedo, shading, light)
        losses = self.guide.step(renders, cameras, step)
        if self.config.lambda_normal_consistency > 0:
            losses["loss_normal_consistency"] = normal_consistency_loss(mesh.vertices, mesh.faces)
        if self.config.lambda_laplacian > 0:
            losses["loss_laplacian"] = laplacian_loss(mesh.vertices, mesh.faces)
        return losses

    def view_renderer(self) -> Callable[[Cameras], dict[str, Tensor]]:
        """Evaluation renders, albedo shading; the surface is extracted once for all views."""
        mesh = self.mesh()
        return lambda camera: self.renderer.render(mesh, camera, self.albedo_field.albedo)

    @torch.no_grad()
    def preview(self) -> np.ndarray:
        """Evaluation views side by side, albedo above normals: ``[2H, n*W, 3]``."""
        mesh = self.mesh()
        rows = []
        for shading in ("albedo", "normal"):
            out = self.renderer.render(mesh, self.eval_cameras.to(self.device), self.albedo_field.albedo, shading)
            rows.append(torch.cat(list(out["rgb"]), dim=1))
        return torch.cat(rows, dim=0).clamp(0, 1).cpu().numpy()
