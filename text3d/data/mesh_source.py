"""Mesh files (OBJ, GLB/glTF, PLY, ...) as dataset sources, coloured by their texture or vertex colours."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from torch import Tensor

from text3d.data.objects import OBJECT_RADIUS
from text3d.errors import UserError
from text3d.renderer.axes import file_to_world
from text3d.renderer.cameras import Cameras
from text3d.renderer.mesh import Mesh, MeshRenderer

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")
Y_UP_SUFFIXES = (".obj", ".glb", ".gltf")
"""Files read in glTF's axes (+Y up); the others are z-up."""
DEFAULT_GREY = 0.7


@dataclass
class MeshAsset:
    """A mesh scaled to fit inside a sphere of :data:`OBJECT_RADIUS` around the origin, with its colours."""

    mesh: Mesh
    vertex_colors: Tensor | None = None
    """[V, 3] in [0, 1], when the file has vertex (or face) colours."""
    texture: tuple[Tensor, Tensor] | None = None
    """(uvs [V, 2], image [Ht, Wt, 3] in [0, 1] with row 0 at v = 0), when the file has a textured material."""

    def trimesh(self) -> trimesh.Trimesh:
        """The normalised geometry (the ground truth of a dataset made from it)."""
        return trimesh.Trimesh(self.mesh.vertices.numpy(), self.mesh.faces.numpy(), process=False)


def load_mesh_asset(path: str | os.PathLike, radius: float = OBJECT_RADIUS) -> MeshAsset:
    """Read a mesh file, turn it into the world's axes, centre it on its bounding box and scale it to fit a sphere of
    ``radius``.

    GLB/glTF and OBJ are read in glTF's axes (+Y up, front +Z: the spec's, and what text3d and most tools write);
    PLY, STL and OFF as z-up (the usual axes of scans and 3D-print files), like the world.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"mesh file {path} does not exist")
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as e:  # noqa: BLE001 -- trimesh raises many kinds for unreadable files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read mesh file {path}: {first}") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise UserError(f"mesh file {path} holds no triangles")
    v = np.asarray(loaded.vertices, dtype=np.float64)
    if path.suffix.lower() in Y_UP_SUFFIXES:
        v = file_to_world(v)
    if not np.isfinite(v).all():
        raise UserError(f"mesh file {path} has non-finite vertex positions")
    center = 0.5 * (v.min(0) + v.max(0))
    extent = np.linalg.norm(v - center, axis=1).max()
    if extent <= 0:
        raise UserError(f"mesh file {path} is degenerate (all vertices at one point)")
    v = (v - center) * (radius / extent)
    mesh = Mesh(torch.from_numpy(v).float(), torch.from_numpy(np.asarray(loaded.faces)).long())
    visual = loaded.visual
    if visual.kind == "texture" and getattr(visual, "uv", None) is not None:
        image = _material_image(visual.material)
        if image is not None:
            uvs = torch.from_numpy(np.asarray(visual.uv, dtype=np.float32))
            # Image row 0 is the top (v = 1); the rasterizer samples row 0 at v = 0.
            return MeshAsset(mesh, texture=(uvs, torch.from_numpy(image).flip(0)))
    if visual.kind in ("vertex", "face"):
        colors = np.asarray(visual.vertex_colors, dtype=np.float32)[:, :3] / 255.0
        return MeshAsset(mesh, vertex_colors=torch.from_numpy(colors))
    return MeshAsset(mesh, vertex_colors=torch.full((len(v), 3), DEFAULT_GREY))


def _material_image(material) -> np.ndarray | None:
    """The base colour image of a trimesh material as float32 ``[H, W, 3]``, or None."""
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    if image is None:
        return None
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


@torch.no_grad()
def render_mesh_asset(
    asset: MeshAsset, cameras: Cameras, supersample: int, light_dir: tuple[float, float, float], ambient: float
) -> Tensor:
    """Straight-alpha RGBA ``[B, H, W, 4]`` of ``asset`` lit by a fixed world-space light (view-independent)."""
    s = supersample
    big = cameras.with_size(cameras.height * s, cameras.width * s)
    renderer = MeshRenderer(background=(0.0, 0.0, 0.0), ambient=ambient, backend="torch")
    light = F.normalize(torch.tensor(light_dir, dtype=torch.float32), dim=0).expand(len(cameras), 3)
    images = []
    for i in range(len(cameras)):
        out = renderer.render(asset.mesh, big[i], shading="lambertian", light_dirs=light[i : i + 1],
                              texture=asset.texture, vertex_colors=asset.vertex_colors)
        # Over black the colour is premultiplied: average sub-pixels as such, then un-premultiply.
        rgba = torch.cat([out["rgb"], out["opacity"]], dim=-1).permute(0, 3, 1, 2)
        images.append(F.avg_pool2d(rgba, s).permute(0, 2, 3, 1))
    rgba = torch.cat(images)
    alpha = rgba[..., 3:].clamp(0, 1)
    rgb = torch.where(alpha > 0, rgba[..., :3] / alpha.clamp(min=1e-6), torch.zeros_like(rgba[..., :3]))
    return torch.cat([rgb.clamp(0, 1), alpha], dim=-1)
