"""Rendering a triangle mesh through the differentiable rasterizer (nvdiffrast or its torch twin)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from text3d.geometry.mesh import mesh_normals
from text3d.renderer import rasterizer as rz
from text3d.renderer.cameras import Cameras

MeshShading = Literal["albedo", "lambertian", "textureless", "normal"]


@dataclass
class Mesh:
    """A triangle mesh in world space."""

    vertices: Tensor
    """[V, 3] float32 positions."""
    faces: Tensor
    """[F, 3] int64 vertex indices, counter-clockwise seen from outside."""

    def vertex_normals(self) -> Tensor:
        """``[V, 3]`` unit area-weighted vertex normals (differentiable in the positions)."""
        return mesh_normals(self.vertices, self.faces)[0]


def world_to_clip(vertices: Tensor, cameras: Cameras) -> Tensor:
    """Clip-space positions ``[B, V, 4]`` of world ``vertices: [V, 3]`` for each camera."""
    w2c = torch.linalg.inv(cameras.c2w)
    mvp = cameras.projection() @ w2c  # [B, 4, 4]
    homo = F.pad(vertices, (0, 1), value=1.0)  # [V, 4]
    return torch.einsum("bij,vj->bvi", mvp, homo)


class MeshRenderer:
    """Renders ``rgb [B, H, W, 3]``, ``opacity [B, H, W, 1]``, ``normal [B, H, W, 3]`` and world ``position``.

    Images come out in row order (top row first), like the volume renderer's, although the rasterizer's pixel
    (0, 0) is the bottom-left one. Silhouettes are antialiased so the mask carries gradients to vertex positions;
    with ``supersample`` > 1 the image is rendered that many times larger and box-filtered down.
    Cameras with ``pixels`` set get the full image rendered and those pixels picked ([B, 1, P, C]).
    """

    def __init__(
        self,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
        ambient: float = 0.1,
        backend: str = "auto",
        device: torch.device | str = "cpu",
        supersample: int = 1,
    ) -> None:
        self.device = torch.device(device)
        self.supersample = supersample
        self.background = torch.tensor(background, device=self.device)
        self.ambient = ambient
        self.backend = backend

    def render(
        self,
        mesh: Mesh,
        cameras: Cameras,
        albedo: Callable[[Tensor], Tensor] | None = None,
        shading: MeshShading = "albedo",
        light_dirs: Tensor | None = None,
        texture: tuple[Tensor, Tensor] | None = None,
        vertex_colors: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Colour comes from ``albedo(points [N, 3]) -> [N, 3]`` at surface points, from ``texture``:
        ``(uvs [V, 2], image [Ht, Wt, 3])`` with the image's row 0 at v = 0 (the rasterizer's convention), or
        from ``vertex_colors: [V, 3]``."""
        dev = mesh.vertices.device
        # The rasterizer works in float32 (nvdiffrast only takes float32): mixed precision applies to the albedo.
        albedo_autocast = _current_autocast(dev.type)
        with torch.autocast(dev.type, enabled=False):
            return self._render(mesh, cameras, albedo, shading, light_dirs, texture, vertex_colors, albedo_autocast)

    def _render(self, mesh, cameras, albedo, shading, light_dirs, texture, vertex_colors, albedo_autocast):
        dev, backend, s = mesh.vertices.device, self.backend, self.supersample
        if albedo is not None:
            albedo = _with_autocast(albedo, dev.type, albedo_autocast)
        tri = mesh.faces.to(torch.int32)
        pos = world_to_clip(mesh.vertices.float(), cameras.to(dev))
        rast, _ = rz.rasterize(pos, tri, (cameras.height * s, cameras.width * s), backend=backend)
        extra = texture[0] if texture is not None else vertex_colors
        parts = [mesh.vertices, mesh.vertex_normals()] + ([extra] if extra is not None else [])
        attrs = torch.cat(parts, dim=-1)[None].expand(len(cameras), -1, -1).contiguous()
        interp = rz.interpolate(attrs, rast, tri, backend=backend)
        position, normal = interp[..., :3], F.normalize(interp[..., 3:6], dim=-1, eps=1e-12)
        if texture is not None:
            texels = rz.texture(texture[1][None].contiguous(), interp[..., 6:8].contiguous(), backend=backend)
            albedo = _Lookup(texels, rast[..., 3] > 0)
        elif vertex_colors is not None:
            albedo = _Lookup(interp[..., 6:9], rast[..., 3] > 0)
        covered = rast[..., 3:] > 0  # [B, H, W, 1]
        color = self._shade(position, normal, covered, albedo, shading, light_dirs)
        image = torch.where(covered, color, self.background.to(dev).expand_as(color))
        image = rz.antialias(image.contiguous(), rast, pos, tri, backend=backend)
        opacity = rz.antialias(covered.float(), rast, pos, tri, backend=backend)
        out = {"rgb": image, "opacity": opacity, "normal": normal * covered, "position": position * covered}
        # Rasterizer rows run bottom-up (OpenGL); flip to image row order.
        out = {k: v.flip(1) for k, v in out.items()}
        if s > 1:  # box-filter the supersampled image down: edges as smooth as a photograph's
            out = {k: F.avg_pool2d(v.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1) for k, v in out.items()}
        if cameras.pixels is not None:
            pix = cameras.pixels.to(dev)
            out = {k: v.reshape(v.shape[0], -1, v.shape[-1]).gather(1, pix[..., None].expand(-1, -1, v.shape[-1]))
                   .unsqueeze(1) for k, v in out.items()}
        return out

    def _shade(self, position, normal, covered, albedo, shading, light_dirs) -> Tensor:
        """Colour ``[B, H, W, 3]`` of covered pixels (uncovered ones are overwritten by the background)."""
        if shading == "normal":
            return normal * 0.5 + 0.5
        b = position.shape[0]
        if shading == "textureless":
            base = torch.ones_like(position)
        else:
            if albedo is None:
                raise ValueError(f"shading '{shading}' needs an albedo function")
            mask = covered[..., 0]
            base = torch.zeros_like(position)
            # A view may cover no pixel: the albedo then gets (and gives) zero points.
            base = base.index_put((mask,), albedo(position[mask]).to(base.dtype))
        if shading == "albedo":
            return base
        if light_dirs is None:
            raise ValueError(f"shading '{shading}' needs light_dirs")
        diffuse = (normal * light_dirs.view(b, 1, 1, 3)).sum(-1, keepdim=True).clamp(min=0.0)
        return base * (self.ambient + (1.0 - self.ambient) * diffuse)


def _current_autocast(device_type: str) -> tuple[bool, torch.dtype]:
    return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


def _with_autocast(fn: Callable[[Tensor], Tensor], device_type: str, state: tuple[bool, torch.dtype]):
    """``fn`` run under the autocast ``state`` (enabled, dtype), whatever the caller's."""
    enabled, dtype = state

    def run(points: Tensor) -> Tensor:
        with torch.autocast(device_type, dtype=dtype, enabled=enabled):
            return fn(points)

    return run


class _Lookup:
    """An albedo 'function' that returns precomputed per-pixel colours of the covered pixels, in mask order."""

    def __init__(self, colors: Tensor, mask: Tensor) -> None:
        self.colors = colors[mask]

    def __call__(self, points: Tensor) -> Tensor:
        return self.colors
