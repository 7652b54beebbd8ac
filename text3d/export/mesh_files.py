"""Textured mesh files: a GLB with a PBR material, and OBJ + MTL + PNG, all written atomically."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import trimesh
from torch import Tensor
from trimesh.visual.material import PBRMaterial, SimpleMaterial

from text3d.export.bake import bake_texture
from text3d.export.config import TextureExportConfig
from text3d.export.uv import unwrap
from text3d.io import atomic_open
from text3d.renderer.rasterizer import Backend


@dataclass
class TexturedMesh:
    """What was exported: the unwrapped mesh, its baked texture and the files."""

    vertices: np.ndarray
    """[V, 3] float32 positions (vertices on UV seams are duplicated)."""
    faces: np.ndarray
    """[F, 3] int64."""
    uvs: np.ndarray
    """[V, 2] float32 in [0, 1], v up (OBJ convention)."""
    texture: np.ndarray
    """[S, S, 3] uint8, row 0 at the top (v = 1)."""
    files: dict[str, Path]
    """Written files by kind: glb, obj, mtl, png (and, once rendered, contact_sheet and turntable)."""


def bake_and_export(
    vertices: Tensor,
    faces: Tensor,
    color_fn: Callable[[Tensor], Tensor],
    out_dir: Path,
    config: TextureExportConfig | None = None,
    name: str = "model",
    backend: Backend = "auto",
) -> TexturedMesh:
    """Unwrap, bake ``color_fn`` and write the files of ``config.formats``; see :func:`export_textured_mesh`.

    ``vertices: [V, 3]`` float (``color_fn`` is called on points on their device), ``faces: [F, 3]`` int;
    ``color_fn`` maps world points ``[N, 3]`` to colours ``[N, 3]`` in [0, 1].
    """
    config = config or TextureExportConfig()
    v, f, uv = unwrap(vertices.detach().cpu().numpy(), faces.cpu().numpy(), timeout=config.timeout,
                      max_faces=config.max_faces, texture_size=config.texture_size, padding=config.padding)
    v_dev = torch.from_numpy(v).to(device=vertices.device, dtype=torch.float32)
    texture = bake_texture(v_dev, f, uv, color_fn, size=config.texture_size, padding=config.padding, backend=backend)
    files = export_textured_mesh(v, f, uv, texture, out_dir, name, config)
    return TexturedMesh(v.astype(np.float32), f, uv, texture, files)


def export_textured_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    texture: np.ndarray,
    out_dir: Path,
    name: str = "model",
    config: TextureExportConfig | None = None,
) -> dict[str, Path]:
    """Write ``{name}.glb`` and/or ``{name}.obj`` + ``{name}.mtl`` + ``{name}.png`` into ``out_dir``.

    ``vertices: [V, 3]``, ``faces: [F, 3]``, ``uvs: [V, 2]`` with v up (OBJ convention; trimesh flips it for glTF),
    ``texture: [H, W, 3]`` uint8 in image row order, as :func:`text3d.export.bake.bake_texture` makes it.
    The GLB has smooth NORMALs, TEXCOORD_0 and a metallic-roughness material with the texture as base colour.
    Each file is renamed into place only once complete; the OBJ comes last, after the MTL and PNG it names.
    Returns the written paths by kind: ``glb``, ``obj``, ``mtl``, ``png``.
    """
    config = config or TextureExportConfig()
    out_dir = Path(out_dir)
    vertices, faces, uvs = np.asarray(vertices, np.float64), np.asarray(faces, np.int64), np.asarray(uvs, np.float64)
    image = PIL.Image.fromarray(np.ascontiguousarray(texture, np.uint8))
    normals = _welded_normals(vertices, faces)
    written: dict[str, Path] = {}
    if "glb" in config.formats:
        material = PBRMaterial(name=name, baseColorTexture=image, baseColorFactor=[255, 255, 255, 255],
                               metallicFactor=0.0, roughnessFactor=config.roughness)
        mesh = _textured(vertices, faces, normals, uvs, material)
        glb = trimesh.exchange.gltf.export_glb(trimesh.Scene({name: mesh}), include_normals=True)
        written["glb"] = _write(out_dir / f"{name}.glb", glb)
    if "obj" in config.formats:
        # White diffuse and no specular: viewers multiply Kd into map_Kd, and trimesh's PBR->MTL default is 0.4 grey.
        material = SimpleMaterial(image=image, diffuse=[255, 255, 255, 255], ambient=[0, 0, 0, 255],
                                  specular=[0, 0, 0, 255], name=name)
        mesh = _textured(vertices, faces, normals, uvs, material)
        obj, files = trimesh.exchange.obj.export_obj(mesh, include_normals=True, mtl_name=f"{name}.mtl",
                                                     return_texture=True)
        # trimesh names the texture after the material: {name}.png, which the MTL's map_Kd references.
        for file_name, data in files.items():
            written[Path(file_name).suffix.lstrip(".")] = _write(out_dir / file_name, data)
        written["obj"] = _write(out_dir / f"{name}.obj", obj.encode())
    return written


def _textured(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, uvs: np.ndarray,
              material: PBRMaterial | SimpleMaterial) -> trimesh.Trimesh:
    return trimesh.Trimesh(vertices, faces, vertex_normals=normals, process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uvs, material=material))


def _welded_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals ``[V, 3]`` computed with coincident vertices merged.

    UV seams duplicate vertices; normals of the split mesh would differ across a seam and show it in the shading.
    """
    unique, inverse = np.unique(vertices, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    normals = trimesh.Trimesh(unique, inverse[faces], process=False).vertex_normals[inverse]
    # A vertex touched only by degenerate faces has no normal; glTF requires unit NORMALs.
    bad = ~np.isclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-3)
    normals[bad] = (0.0, 0.0, 1.0)
    return normals


def _write(path: Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return path
