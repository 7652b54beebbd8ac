"""Geometry stage: DMTet (learnable SDF + deformation on a tetrahedral grid) refined through the rasterizer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from torch import Tensor, nn

from text3d.config import Range
from text3d.errors import TrainingError
from text3d.field.base import surface_level
from text3d.geometry.marching_tets import marching_tets
from text3d.geometry.regularizers import laplacian_loss, normal_consistency_loss
from text3d.geometry.tets import tet_grid
from text3d.guide.base import Guide
from text3d.renderer.cameras import CameraConfig, Cameras, ViewSampler
from text3d.renderer.mesh import Mesh, MeshRenderer
from text3d.renderer.lighting import random_light_dirs
from text3d.stage.base import GuidedStage

ShadingChoice = Literal["albedo", "lambertian", "textureless", "normal", "random"]
MESH_SHADINGS = ("albedo", "lambertian", "textureless", "normal")


@dataclass
class GeometryConfig:
    """DMTet geometry refinement."""

    enabled: bool = True
    """Train this stage; when false it trains nothing and loads its last checkpoint if the run has one, else the
    coarse surface passes on as it is."""
    max_steps: Annotated[int, Range(0, 1_000_000)] = 3000
    """Optimisation steps."""
    guidance_scale: Annotated[float, Range(0.0)] | None = None
    """Classifier-free guidance scale of this stage's SDS (None: guide.sds.guidance_scale)."""
    tet_resolution: Annotated[int, Range(4, 192)] = 128
    """Cubes per axis of the tetrahedral grid (each split into 6 tetrahedra)."""
    iso_level: Annotated[float, Range(0.0, min_exclusive=True)] = 10.0
    """Density of the coarse field taken as the initial surface."""
    lr_sdf: Annotated[float, Range(0.0, min_exclusive=True)] = 1e-3
    """Learning rate of the per-vertex SDF."""
    lr_deform: Annotated[float, Range(0.0, min_exclusive=True)] = 1e-3
    """Learning rate of the per-vertex deformation."""
    deform_scale: Annotated[float, Range(0.0, 1.0)] = 0.25
    """Largest vertex deformation, in grid cells (larger can invert the thin Kuhn tetrahedra)."""
    shading: ShadingChoice = "random"
    """Shading of training renders; 'random' draws albedo/lambertian/textureless/normal with shading_probs."""
    shading_probs: Annotated[tuple[float, float, float, float], Range(0.0)] = (0.25, 0.25, 0.25, 0.25)
    """Probabilities of albedo / lambertian / textureless / normal when shading is 'random'."""
    lambda_normal_consistency: Annotated[float, Range(0.0)] = 0.1
    """Weight of the normal-consistency regulariser (smooth surfaces)."""
    lambda_laplacian: Annotated[float, Range(0.0)] = 0.0
    """Weight of the uniform Laplacian regulariser."""
    camera: CameraConfig = dataclasses.field(default_factory=lambda: CameraConfig(height=512, width=512))
    """Training views (random views for SDS; reconstruction uses the dataset's)."""

    def validate(self) -> None:
        if any(p < 0 for p in self.shading_probs) or sum(self.shading_probs) <= 0:
            raise ValueError("shading_probs must be non-negative with a positive sum")


class DMTet(nn.Module):
    """A tetrahedral grid with a learnable SDF (negative inside) and bounded per-vertex deformation."""

    def __init__(self, resolution: int, radius: float, deform_scale: float, device=None) -> None:
        super().__init__()
        verts, tets = tet_grid(resolution, radius, device=device)
        self.register_buffer("grid_verts", verts)
        self.register_buffer("tets", tets)
        self.max_offset = deform_scale * 2.0 * radius / resolution
        self.sdf = nn.Parameter(torch.zeros(verts.shape[0], device=device))
        self.deform = nn.Parameter(torch.zeros_like(verts))

    def mesh(self) -> Mesh:
        """The current surface (differentiable in ``sdf`` and ``deform``)."""
        verts = self.grid_verts + self.max_offset * torch.tanh(self.deform)
        vertices, faces = marching_tets(verts, self.sdf, self.tets)
        return Mesh(vertices, faces)

    @torch.no_grad()
    def init_from_density(self, density_fn, iso_level: float) -> None:
        """Set the SDF from a density field so its zero level set is the ``iso_level`` surface.

        The SDF is ``tanh((iso - density) / iso)``: negative inside, roughly linear near the surface, bounded
        far away so no vertex dominates the optimiser. Falls back to half the density range (logged) when no
        grid vertex is on each side of the level; a constant field is an error.
        """
        density = torch.cat([density_fn(chunk) for chunk in self.grid_verts.split(65536)]).float()
        iso_level = surface_level(density.min().item(), density.max().item(), iso_level, "geometry")
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
