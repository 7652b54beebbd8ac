"""Volume rendering of a density/albedo field: stratified samples in a bounded cube, alpha compositing."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from text3d import kernels
from text3d.backends import select_backend
from text3d.field.base import Field
from text3d.renderer.cameras import Cameras
from text3d.renderer.compositing import pack_info, render_weight_from_density
from text3d.renderer.config import RendererConfig
from text3d.renderer.occupancy import OccupancyGrid

Shading = Literal["albedo", "lambertian", "textureless"]


class BackgroundMLP(nn.Module):
    """Background colour ``[N, 3]`` from unit view directions ``d: [N, 3]`` (a few sinusoids -> small MLP)."""

    def __init__(self, frequencies: int = 3, hidden: int = 32) -> None:
        super().__init__()
        self.register_buffer("freqs", 2.0 ** torch.arange(frequencies), persistent=False)
        self.net = nn.Sequential(nn.Linear(3 + 6 * frequencies, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 3))

    def forward(self, d: Tensor) -> Tensor:
        xf = d[..., None] * self.freqs  # [N, 3, K]
        enc = torch.cat([d, xf.sin().flatten(1), xf.cos().flatten(1)], dim=-1)
        return torch.sigmoid(self.net(enc))


def ray_cube_intersection(origins: Tensor, dirs: Tensor, radius: float) -> tuple[Tensor, Tensor]:
    """Entry/exit distances ``(t_near, t_far): [N]`` of rays with the cube ``[-radius, radius]^3``.

    Rays that miss get ``t_far <= t_near``; entry is clamped to 0 for cameras inside the cube.
    """
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (-radius - origins) * inv
    t1 = (radius - origins) * inv
    t_near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0.0)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    return t_near, t_far


class VolumeRenderer(nn.Module):
    """Renders a :class:`Field` from :class:`Cameras`.

    ``render`` returns images ``rgb: [B, H, W, 3]``, ``opacity: [B, H, W, 1]``, ``depth: [B, H, W, 1]``
    (expected hit distance along the ray, given a hit) and, when normals were computed (non-albedo shading or
    ``need_normals``), ``normal: [B, H, W, 3]`` (world space, opacity-weighted) and ``orientation: [B, H, W, 1]``
    (per-ray orientation penalty, sum_i w_i * max(0, n_i . d)^2, from DreamFusion).
    """

    def __init__(self, config: RendererConfig, radius: float, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        self.radius = radius
        self.occupancy = OccupancyGrid(config.occupancy, radius, device=device)
        self.background = BackgroundMLP().to(device) if config.background == "mlp" else None
        self.register_buffer("bg_color", torch.tensor(config.background_color, device=device), persistent=False)
        self.compositing = select_backend("volume compositing", config.backend, device, {"cuda": kernels.problem})

    @property
    def step_size(self) -> float:
        """Length of one sampling stratum along the cube's diagonal (the longest ray)."""
        return 2.0 * self.radius * 3**0.5 / self.config.num_samples

    def update_occupancy(self, field: Field, generator: torch.Generator) -> None:
        self.occupancy.update(field.density, self.step_size, generator)

    def render(
        self,
        field: Field,
        cameras: Cameras,
        *,
        shading: Shading = "albedo",
        light_dirs: Tensor | None = None,
        generator: torch.Generator | None = None,
        need_normals: bool = False,
    ) -> dict[str, Tensor]:
        """Render every pixel of ``cameras``.

        ``light_dirs: [B, 3]`` unit directions towards the light (required for lambertian/textureless).
        ``generator`` drives the stratified jitter (training); ``None`` uses strata midpoints.
        """
        if shading != "albedo" and light_dirs is None:
            raise ValueError(f"shading '{shading}' needs light_dirs")
        origins, dirs = cameras.rays()
        b, h, w = origins.shape[:3]
        o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        light = None
        if light_dirs is not None:
            light = light_dirs[:, None, :].expand(b, h * w, 3).reshape(-1, 3)
        if torch.is_grad_enabled():
            out = self._render_rays(field, o, d, light, shading, generator, need_normals)
        else:
            n = self.config.chunk_rays
            parts = [
                self._render_rays(
                    field, o[i : i + n], d[i : i + n], None if light is None else light[i : i + n], shading, None,
                    need_normals,
                )
                for i in range(0, o.shape[0], n)
            ]
            out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return {k: v.reshape(b, h, w, -1) for k, v in out.items()}

    def _render_rays(
        self,
        field: Field,
        o: Tensor,
        d: Tensor,
        light: Tensor | None,
        shading: Shading,
        generator: torch.Generator | None,
        need_normals: bool,
    ) -> dict[str, Tensor]:
        """Render rays ``o, d: [R, 3]``; returns per-ray tensors ``[R, C]``."""
        s = self.config.num_samples
        t_near, t_far = ray_cube_intersection(o, d, self.radius)
        hit = t_far > t_near
        t_far = torch.where(hit, t_far, t_near)
        if generator is not None and self.config.perturb:
            u = torch.rand(o.shape[0], s, generator=generator).to(o.device)
        else:
            u = torch.full((o.shape[0], s), 0.5, device=o.device)
        span = (t_far - t_near)[:, None]
        t = t_near[:, None] + (torch.arange(s, device=o.device) + u) / s * span  # [R, S]
        dt = span / s  # [R, 1]
        pts = o[:, None, :] + d[:, None, :] * t[..., None]  # [R, S, 3]

        active = hit[:, None] & self.occupancy.occupied(pts.reshape(-1, 3)).view(-1, s)  # [R, S]
        x = pts[active]
        with_normals = need_normals or shading != "albedo"
        if with_normals:
            sigma_a, rgb_a, normal_a = field.density_and_normal(x)
        else:
            sigma_a, rgb_a = field(x)
        weights = self._weights(sigma_a, active, dt)  # [R, S]
        opacity = weights.sum(dim=1, keepdim=True)
        depth = (weights * t).sum(dim=1, keepdim=True) / opacity.clamp(min=1e-6)

        if with_normals:
            color_a = self._shade(rgb_a, normal_a, light, active, shading)
        else:
            color_a = rgb_a
        color = torch.zeros(*active.shape, 3, device=o.device, dtype=color_a.dtype).index_put((active,), color_a)
        background = self.background(d) if self.background is not None else self.bg_color.expand_as(o)
        rgb = (weights[..., None] * color).sum(dim=1) + (1.0 - opacity) * background
        out = {"rgb": rgb, "opacity": opacity, "depth": depth}
        if with_normals:
            normal = torch.zeros(*active.shape, 3, device=o.device, dtype=normal_a.dtype).index_put((active,), normal_a)
            out["normal"] = (weights[..., None] * normal).sum(dim=1)
            facing = (normal * d[:, None, :]).sum(dim=-1).clamp(min=0.0)  # normals pointing away from the camera
            out["orientation"] = (weights.detach() * facing.square()).sum(dim=1, keepdim=True)
        return out

    def _weights(self, sigma_a: Tensor, active: Tensor, dt: Tensor) -> Tensor:
        """Compositing weights ``[R, S]`` from the densities ``sigma_a: [M]`` of the ``active: [R, S]`` samples."""
        if self.compositing == "cuda":  # packed: empty samples are never touched
            deltas = dt.expand(active.shape)[active]
            w_a = render_weight_from_density(sigma_a.float(), deltas, pack_info(active.sum(dim=1)), backend="cuda")
            return torch.zeros(active.shape, device=w_a.device, dtype=w_a.dtype).index_put((active,), w_a)
        # Dense: scatter the active samples back; empty samples keep zero density.
        sigma = torch.zeros(active.shape, device=sigma_a.device, dtype=sigma_a.dtype).index_put((active,), sigma_a)
        alpha = 1.0 - torch.exp(-sigma * dt)
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1] + 1e-10], dim=1), dim=1)
        return alpha * trans

    def _shade(self, albedo: Tensor, normal: Tensor, light: Tensor | None, active: Tensor, shading: Shading) -> Tensor:
        """Colour of active samples ``[M, 3]`` under the given shading mode."""
        if shading == "albedo":
            return albedo
        assert light is not None
        light_a = light[:, None, :].expand(*active.shape, 3)[active]
        ambient = self.config.ambient
        diffuse = (normal * light_a).sum(dim=-1, keepdim=True).clamp(min=0.0)
        lum = ambient + (1.0 - ambient) * diffuse
        return lum.expand_as(albedo) if shading == "textureless" else albedo * lum
