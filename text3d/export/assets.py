"""The end of a run: bake the albedo onto the final mesh, write GLB/OBJ, and render what was written."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from text3d.export.compress import compress_glb
from text3d.export.mesh_files import TexturedMesh, bake_and_export
from text3d.export.video import write_contact_sheet, write_turntable
from text3d.renderer.cameras import Cameras, spherical_cameras
from text3d.renderer.mesh import Mesh, MeshRenderer

log = logging.getLogger(__name__)


def export_assets(mesh: Mesh, albedo_field: nn.Module, config, out_dir: Path, renderer: MeshRenderer,
                  orbit: Cameras) -> TexturedMesh:
    """Bake ``albedo_field`` onto ``mesh``, write model.glb / model.obj+mtl+png (and model.glb's compressed copy if
    ``config.export.compress`` asks), a contact sheet of the exported mesh from the ``orbit`` views and a turntable
    video; all from the files' own mesh and texture (in the world's frame, where the cameras are: the files hold it
    placed, see :mod:`text3d.export.placement`)."""
    ex = config.export
    with torch.no_grad():
        asset = bake_and_export(mesh.vertices, mesh.faces, albedo_field.albedo, out_dir, ex, "model",
                                config.mesh_render.rasterizer)
        if ex.compress:
            asset.files["compressed"] = compress_glb(asset.files["glb"], ex.compress)
        res = ex.turntable_resolution
        sheet = render_asset(asset, renderer, orbit.with_size(res, res))
        asset.files["contact_sheet"] = write_contact_sheet(
            (sheet.cpu().numpy() * 255).round().astype(np.uint8), out_dir / "contact_sheet.png"
        )
        if ex.turntable_frames > 0:
            n = ex.turntable_frames
            one = torch.ones(n)
            first = orbit[0]
            turntable = spherical_cameras(
                torch.arange(n) * (360.0 / n), first.elevation.item() * one, first.position.norm().item() * one,
                torch.rad2deg(first.fov_y).item() * one, res, res,
            )
            frames = render_asset(asset, renderer, turntable)
            asset.files["turntable"] = write_turntable(
                (frames.cpu().numpy() * 255).round().astype(np.uint8), out_dir / "turntable.mp4"
            )
    log.info("export: %d faces, %d² texture -> %s", len(asset.faces), ex.texture.texture_size,
             ", ".join(p.name for p in asset.files.values()))
    return asset


FILLS_SCENE = 0.98
"""A mesh spanning at least this share of the scene cube along two or more axes fills the scene (see
:func:`asset_summary`)."""


def asset_summary(asset: TexturedMesh, radius: float) -> dict:
    """metrics.json's account of the export: counts, the size in the files (metres, x y z with +Y up), the mesh's
    span of the scene cube [-radius, radius]^3 per world axis (x y z, z up), whether that span says it fills the
    scene (a field grown out to the bounds, or an object cut off by them: logged as a warning), the files and the
    GLBs' sizes in bytes."""
    placed = asset.placement.points(asset.vertices)
    span = (asset.vertices.max(0) - asset.vertices.min(0)) / (2.0 * radius)
    spanned = [axis for axis, share in zip("xyz", span) if share >= FILLS_SCENE]
    fills_scene = len(spanned) >= 2
    if fills_scene:
        log.warning("export: the mesh spans the scene cube along %s (radius %g): the field filled the scene, or the "
                    "object is cut off by its bounds", " and ".join(spanned), radius)
    return {
        "faces": len(asset.faces),
        "vertices": len(asset.vertices),
        "texture_size": int(asset.texture.shape[0]),
        "size_m": [round(float(s), 4) for s in placed.max(0) - placed.min(0)],
        "scene_span": [round(float(s), 4) for s in span],
        "fills_scene": fills_scene,
        "files": sorted(p.name for p in asset.files.values()),
        "bytes": {p.name: p.stat().st_size for kind, p in asset.files.items() if kind in ("glb", "compressed")},
    }


@torch.no_grad()
def render_asset(asset: TexturedMesh, renderer: MeshRenderer, cameras: Cameras) -> Tensor:
    """Renders ``[N, H, W, 3]`` of the exported textured mesh (its UVs and baked texture), one view at a time."""
    dev = renderer.device
    mesh = Mesh(torch.from_numpy(asset.vertices).to(dev), torch.from_numpy(asset.faces).to(dev))
    uvs = torch.from_numpy(asset.uvs).to(dev)
    # The texture's row 0 is its top (v = 1); the rasterizer samples row 0 at v = 0.
    tex = torch.from_numpy(asset.texture).to(dev).float().div(255.0).flip(0)
    views = [renderer.render(mesh, cameras[i], texture=(uvs, tex))["rgb"] for i in range(len(cameras))]
    return torch.cat(views)
