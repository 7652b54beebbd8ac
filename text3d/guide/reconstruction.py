"""Photometric guide against known reference views: ground truth is known, so every stage is measurable."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from text3d.data.nerf_synthetic import ViewSet
from text3d.guide.config import ReconstructionGuideConfig
from text3d.renderer.cameras import Cameras


class ReconstructionGuide:
    """Compares renders of dataset cameras (``cameras.index`` set) with the matching reference images."""

    def __init__(self, config: ReconstructionGuideConfig, views: ViewSet, background: Tensor) -> None:
        self.config = config
        self.loss_weights = {"loss_rgb": config.lambda_rgb, "loss_mask": config.lambda_mask}
        self.views = views
        self.background = background

    def step(self, renders: dict[str, Tensor], cameras: Cameras, step: int) -> dict[str, Tensor]:
        if cameras.index is None:
            raise ValueError("ReconstructionGuide needs dataset cameras (cameras.index is None)")
        rgb = renders["rgb"]
        target = self.views.images[cameras.index.cpu()]  # [B, H, W, 4]
        if cameras.pixels is not None:
            b, p = cameras.pixels.shape
            pixels = cameras.pixels.cpu()[..., None].expand(b, p, 4)
            target = target.reshape(b, -1, 4).gather(1, pixels).view(b, 1, p, 4)
        target = target.to(rgb.device)
        alpha = target[..., 3:]
        target_rgb = target[..., :3] * alpha + self.background.to(rgb.device) * (1.0 - alpha)
        if self.config.loss == "huber":
            loss_rgb = F.huber_loss(rgb, target_rgb, delta=0.1)
        else:
            loss_rgb = F.mse_loss(rgb, target_rgb)
        return {"loss_rgb": loss_rgb, "loss_mask": F.mse_loss(renders["opacity"], alpha)}


class DatasetViewSampler:
    """Random training views of a dataset: ``views`` per step, each with ``rays_per_view`` random pixels.

    Rays drawn from many views per step fit faster than whole images of a few views for the same cost.
    ``rays_per_view=0`` renders whole images.
    """

    def __init__(self, cameras: Cameras, views: int, rays_per_view: int) -> None:
        self.cameras = cameras
        self.views = views
        self.rays_per_view = rays_per_view

    def __call__(self, generator: torch.Generator) -> Cameras:
        idx = torch.randint(len(self.cameras), (self.views,), generator=generator)
        cameras = self.cameras[idx]
        n_pixels = cameras.height * cameras.width
        if not 0 < self.rays_per_view < n_pixels:
            return cameras
        pixels = torch.randint(n_pixels, (self.views, self.rays_per_view), generator=generator)
        return cameras.with_pixels(pixels)
