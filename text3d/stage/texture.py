"""Texture stage: the geometry is frozen; an albedo field, started from the coarse one, is refined on the mesh."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from torch import Tensor, nn

from text3d.config import Range
from text3d.field.nerf import HashGridField
from text3d.guide.base import Guide
from text3d.renderer.cameras import CameraConfig, Cameras, ViewSampler
from text3d.renderer.mesh import Mesh, MeshRenderer
from text3d.renderer.lighting import random_light_dirs
from text3d.stage.base import GuidedStage


@dataclass
class TextureConfig:
    """Albedo refinement on the frozen mesh."""

    enabled: bool = True
    """Train this stage; when false it trains nothing and loads its last checkpoint if the run has one, else the
    coarse field's albedo is baked as it is."""
    max_steps: Annotated[int, Range(0, 1_000_000)] = 2000
    """Optimisation steps."""
    guidance_scale: Annotated[float, Range(0.0)] | None = None
    """Classifier-free guidance scale of this stage's SDS (None: guide.sds.guidance_scale)."""
    lr_encoding: Annotated[float, Range(0.0, min_exclusive=True)] = 0.01
    """Learning rate of the albedo field's hash grid."""
    lr_network: Annotated[float, Range(0.0, min_exclusive=True)] = 0.001
    """Learning rate of the albedo field's MLP."""
    shading: Literal["albedo", "lambertian", "random"] = "random"
    """Shading of training renders; 'random' draws albedo or lambertian with shading_probs."""
    shading_probs: Annotated[tuple[float, float], Range(0.0)] = (0.5, 0.5)
    """Probabilities of albedo / lambertian when shading is 'random'."""
    camera: CameraConfig = dataclasses.field(default_factory=lambda: CameraConfig(height=512, width=512))
    """Training views (random views for SDS; reconstruction uses the dataset's)."""


class TextureStage(GuidedStage):
    """Implements the trainer's ``Stage`` protocol: trains ``field``'s albedo through the mesh renderer."""

    name = "texture"

    def __init__(
        self,
        config: TextureConfig,
        guide: Guide,
        sample_views: ViewSampler,
        eval_cameras: Cameras,
        mesh: Mesh,
        field: HashGridField,
        renderer: MeshRenderer,
        device: torch.device,
        seed: int,
    ) -> None:
        super().__init__(config, guide, sample_views, eval_cameras, device, seed)
        self.mesh = Mesh(mesh.vertices.detach(), mesh.faces)
        self.field = field
        self.renderer = renderer
        self.loss_weights = dict(guide.loss_weights)

    def modules(self) -> dict[str, nn.Module]:
        return {"field": self.field}

    def param_groups(self) -> list[dict]:
        c = self.config
        return [
            {"params": list(self.field.encoding.parameters()), "lr": c.lr_encoding, "name": "encoding"},
            {"params": list(self.field.mlp.parameters()), "lr": c.lr_network, "name": "network"},
        ]

    def training_step(self, step: int) -> dict[str, Tensor]:
        cameras = self.sample_views(self.generator).to(self.device)
        shading = self.draw(self.config.shading, self.config.shading_probs, ("albedo", "lambertian"))
        light = random_light_dirs(cameras, self.generator) if shading == "lambertian" else None
        renders = self.renderer.render(self.mesh, cameras, self.field.albedo, shading, light)
        return self.guide.step(renders, cameras, step)

    def view_renderer(self) -> Callable[[Cameras], dict[str, Tensor]]:
        """Evaluation renders, albedo shading."""
        return lambda camera: self.renderer.render(self.mesh, camera, self.field.albedo)

    @torch.no_grad()
    def preview(self) -> np.ndarray:
        """Evaluation views side by side: ``[H, n*W, 3]``."""
        return torch.cat(list(self.render_views(self.eval_cameras)["rgb"]), dim=1).clamp(0, 1).cpu().numpy()
