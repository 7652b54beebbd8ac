"""Coarse stage: a hash-grid NeRF optimised through the volume renderer by any guide."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from text3d.field.nerf import HashGridField
from text3d.guide.base import Guide
from text3d.renderer.cameras import Cameras, ViewSampler
from text3d.renderer.lighting import random_light_dirs
from text3d.renderer.volume import VolumeRenderer
from text3d.stage.base import GuidedStage
from text3d.stage.config import CoarseConfig


def edge_opacity(opacity: Tensor) -> float:
    """The mean of ``opacity: [N, H, W, 1]`` over the outer tenth of each side of the views (at least a pixel)."""
    h, w = opacity.shape[1:3]
    bh, bw = max(1, round(h / 10)), max(1, round(w / 10))
    inner = torch.zeros(h, w, dtype=torch.bool, device=opacity.device)
    inner[bh:h - bh, bw:w - bw] = True
    return opacity[:, ~inner].mean().item()


class CoarseStage(GuidedStage):
    """Implements the trainer's ``Stage`` protocol for the coarse NeRF."""

    name = "coarse"

    def __init__(
        self,
        config: CoarseConfig,
        guide: Guide,
        sample_views: ViewSampler,
        eval_cameras: Cameras,
        device: torch.device,
        seed: int,
        retry_guide: Callable[[], Guide] | None = None,
    ) -> None:
        """``retry_guide`` makes the guide of a second start (``config.fill_guard``; None: the same guide)."""
        super().__init__(config, guide, sample_views, eval_cameras, device, seed)
        self.retry_guide = retry_guide
        self._set_guide(guide)
        self._build_modules()

    def _set_guide(self, guide: Guide) -> None:
        c = self.config
        self.guide = guide
        self.loss_weights = {
            **guide.loss_weights,
            "loss_orientation": c.lambda_orientation,
            "loss_opacity": c.lambda_opacity,
            "loss_opacity_entropy": c.lambda_opacity_entropy,
        }

    def _build_modules(self) -> None:
        torch.manual_seed(self.seed)  # the field's initial weights
        self.field = HashGridField(self.config.field, device=self.device)
        self.renderer = VolumeRenderer(self.config.renderer, self.config.field.radius, device=self.device)

    def modules(self) -> dict[str, nn.Module]:
        return {"field": self.field, "renderer": self.renderer}

    def param_groups(self) -> list[dict]:
        c = self.config
        network = list(self.field.mlp.parameters()) + list(self.renderer.parameters())
        return [
            {"params": list(self.field.encoding.parameters()), "lr": c.lr_encoding, "name": "encoding"},
            {"params": network, "lr": c.lr_network, "name": "network"},
        ]

    def training_step(self, step: int) -> dict[str, Tensor]:
        occ = self.config.renderer.occupancy
        if occ.enabled and step >= occ.warmup_steps and step % occ.update_every == 0:
            self.renderer.update_occupancy(self.field, self.generator)
        cameras = self.sample_views(self.generator).to(self.device)
        r = self.config.renderer
        shading = self.draw(r.shading, r.shading_probs, ("albedo", "lambertian", "textureless"))
        light = random_light_dirs(cameras, self.generator) if shading != "albedo" else None
        renders = self.renderer.render(
            self.field,
            cameras,
            shading=shading,
            light_dirs=light,
            generator=self.generator,
            need_normals=self.config.lambda_orientation > 0,
        )
        losses = self.guide.step(renders, cameras, step)
        if self.config.lambda_orientation > 0:
            losses["loss_orientation"] = renders["orientation"].mean()
        if self.config.lambda_opacity > 0:
            losses["loss_opacity"] = renders["opacity"].mean()
        if self.config.lambda_opacity_entropy > 0:
            o = renders["opacity"].clamp(1e-5, 1.0 - 1e-5)
            losses["loss_opacity_entropy"] = -(o * o.log() + (1.0 - o) * (1.0 - o).log()).mean()
        return losses

    def restart(self, step: int) -> str | None:
        """Start over, as at step 0 but with ``fill_guard.retry``'s guide settings, when the field has grown out to
        the evaluation views' edges by ``fill_guard.check_step``; once at most."""
        guard = self.config.fill_guard
        if guard.edge_opacity == 0 or step != guard.check_step or self.restarted is not None:
            return None
        edge = edge_opacity(self.render_views(self.eval_cameras)["opacity"])
        if edge <= guard.edge_opacity:
            return None
        self.restarted = (f"the field filled the scene by step {step} (opacity {edge:.2f} along the views' edges, "
                          f"above fill_guard.edge_opacity {guard.edge_opacity:g})")
        self._retry()
        self._build_modules()
        self.generator.manual_seed(self.seed)
        return self.restarted

    def _retry(self) -> None:
        if self.retry_guide is not None:
            self._set_guide(self.retry_guide())

    def extra_state(self) -> dict:
        return {**super().extra_state(), "restarted": self.restarted}

    def load_extra_state(self, state: dict) -> None:
        if state.get("restarted") and self.restarted is None:
            self.restarted = state["restarted"]
            self._retry()  # before the guide's own state (its generator) is loaded into it
        super().load_extra_state(state)

    def view_renderer(self) -> Callable[[Cameras], dict[str, Tensor]]:
        """Evaluation renders: strata midpoints, albedo shading."""
        return lambda camera: self.renderer.render(self.field, camera)

    def preview(self) -> np.ndarray:
        """The evaluation views side by side, colour above opacity: ``[2H, n*W, 3]``."""
        out = self.render_views(self.eval_cameras)
        rgb = torch.cat(list(out["rgb"]), dim=1)
        opacity = torch.cat(list(out["opacity"]), dim=1).expand_as(rgb)
        return torch.cat([rgb, opacity], dim=0).clamp(0, 1).cpu().numpy()
