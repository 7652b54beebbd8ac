"""Texture stage: the geometry is frozen; an albedo field, started from the coarse one, is refined on the mesh."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from text3d.field.nerf import HashGridField
from text3d.guide.base import Guide
from text3d.renderer.cameras import Cameras, ViewSampler
from text3d.renderer.lighting import random_light_dirs
from text3d.renderer.mesh import Mesh, MeshRenderer
from text3d.stage.base import GuidedStage
from text3d.stage.config import TextureConfig


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
