"""Textured mesh files: a GLB with a PBR material, and OBJ + MTL + PNG, all written atomically."""

from __future__ import annotations

import json
import struct
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
from text3d.export.config import ExportConfig, TextureExportConfig
from text3d.export.placement import Placement, place
from text3d.export.usdz import write_usdz
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
    """Written files by kind: glb, obj, mtl, png (then, by :func:`text3d.export.assets.export_assets`, compressed,
    contact_sheet and turntable)."""
    placement: Placement
    """How the files' vertices follow from ``vertices`` (world frame): glTF axes, height, origin."""


def bake_and_export(
    vertices: Tensor,
    faces: Tensor,
    color_fn: Callable[[Tensor], Tensor],
    out_dir: Path,
    config: ExportConfig | None = None,
    name: str = "model",
    backend: Backend = "auto",
) -> TexturedMesh:
    """Unwrap, bake ``color_fn`` and write the files of ``config.texture.formats``, placed as ``config`` says; see
    :func:`export_textured_mesh`.

    ``vertices: [V, 3]`` float world positions (``color_fn`` is called on points on their device), ``faces: [F, 3]``
    int; ``color_fn`` maps world points ``[N, 3]`` to colours ``[N, 3]`` in [0, 1]. The returned mesh is in the
    world's frame, as the renders of the asset need it; the files hold it placed.
    """
    config = config or ExportConfig()
    tex = config.texture
    v, f, uv = unwrap(vertices.detach().cpu().numpy(), faces.cpu().numpy(), timeout=tex.timeout,
                      max_faces=tex.max_faces, texture_size=tex.texture_size, padding=tex.padding)
    v_dev = torch.from_numpy(v).to(device=vertices.device, dtype=torch.float32)
    texture = bake_texture(v_dev, f, uv, color_fn, size=tex.texture_size, padding=tex.padding, backend=backend)
    placement = place(v, config.height_m, config.origin)
    files = export_textured_mesh(placement.points(v), f, uv, texture, out_dir, name, tex)
    return TexturedMesh(v.astype(np.float32), f, uv, texture, files, placement)


def export_textured_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    texture: np.ndarray,
    out_dir: Path,
    name: str = "model",
    config: TextureExportConfig | None = None,
) -> dict[str, Path]:
    """Write ``{name}.glb``, ``{name}.obj`` + ``{name}.mtl`` + ``{name}.png`` and ``{name}.usdz`` into ``out_dir``,
    those of ``config.formats``.

    ``vertices: [V, 3]`` as the files hold them (see :mod:`text3d.export.placement`), ``faces: [F, 3]``,
    ``uvs: [V, 2]`` with v up (OBJ convention; trimesh flips it for glTF), ``texture: [H, W, 3]`` uint8 sRGB in
    image row order, as :func:`text3d.export.bake.bake_texture` makes it.
    The GLB has smooth NORMALs, TEXCOORD_0 and a metallic-roughness material (metallic 0, ``config.roughness``) with
    the texture as base colour, sampled with mipmaps and clamped at the atlas' edges; it is double-sided only
    when the surface has holes, through which its inside shows.
    Each file is renamed into place only once complete; the OBJ comes last, after the MTL and PNG it names.
    The USDZ holds the same mesh and material as a UsdPreviewSurface (:mod:`text3d.export.usdz`).
    Returns the written paths by kind: ``glb``, ``obj``, ``mtl``, ``png``, ``usdz``.
    """
    config = config or TextureExportConfig()
    out_dir = Path(out_dir)
    vertices, faces, uvs = np.asarray(vertices, np.float64), np.asarray(faces, np.int64), np.asarray(uvs, np.float64)
    image = PIL.Image.fromarray(np.ascontiguousarray(texture, np.uint8))
    welded = _welded(vertices, faces)
    normals = welded.vertex_normals[welded.metadata["inverse"]]
    # A vertex touched only by degenerate faces has no normal; glTF requires unit NORMALs.
    normals[~np.isclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-3)] = (0.0, 1.0, 0.0)
    written: dict[str, Path] = {}
    if "glb" in config.formats:
        material = PBRMaterial(name=name, baseColorTexture=image, baseColorFactor=[255, 255, 255, 255],
                               metallicFactor=0.0, roughnessFactor=config.roughness,
                               doubleSided=not welded.is_watertight)
        mesh = _textured(vertices, faces, normals, uvs, material)
        glb = trimesh.exchange.gltf.export_glb(trimesh.Scene({name: mesh}), include_normals=True)
        written["glb"] = _write(out_dir / f"{name}.glb", _finish_glb(glb))
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
    if "usdz" in config.formats:
        written["usdz"] = write_usdz(out_dir / f"{name}.usdz", vertices, faces, normals, uvs, image,
                                     config.roughness, double_sided=not welded.is_watertight)
    return written


def _textured(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, uvs: np.ndarray,
              material: PBRMaterial | SimpleMaterial) -> trimesh.Trimesh:
    return trimesh.Trimesh(vertices, faces, vertex_normals=normals, process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uvs, material=material))


def _welded(vertices: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    """The mesh with coincident vertices merged; ``metadata["inverse"]`` maps each input vertex to its merged one.

    UV seams duplicate vertices: normals of the split mesh would differ across a seam and show it in the shading,
    and the split mesh is never watertight.
    """
    unique, inverse = np.unique(vertices, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    welded = trimesh.Trimesh(unique, inverse[faces], process=False)
    welded.metadata["inverse"] = inverse
    return welded


# Trilinear filtering with mipmaps, and no wrap-around: a texture atlas' charts end at its edges.
_SAMPLER = {"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def _finish_glb(glb: bytes) -> bytes:
    """What trimesh leaves out of ``glb``: :data:`_SAMPLER` for every texture (without one, filtering is up to each
    viewer), and each vertex and index buffer view's ``target`` (a GPU upload hint the validator asks for)."""
    json_length, = struct.unpack_from("<I", glb, 12)
    doc = json.loads(glb[20:20 + json_length])
    doc["samplers"] = [_SAMPLER]
    for texture in doc.get("textures", []):
        texture["sampler"] = 0
    for mesh in doc["meshes"]:
        for primitive in mesh["primitives"]:
            for accessor in primitive["attributes"].values():
                doc["bufferViews"][doc["accessors"][accessor]["bufferView"]]["target"] = _ARRAY_BUFFER
            if "indices" in primitive:
                doc["bufferViews"][doc["accessors"][primitive["indices"]]["bufferView"]]["target"] = _ELEMENT_ARRAY_BUFFER
    chunk = json.dumps(doc, separators=(",", ":")).encode()
    chunk += b" " * (-len(chunk) % 4)  # chunks are 4-byte aligned; JSON pads with spaces
    rest = glb[20 + json_length:]
    header = struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(chunk) + len(rest))
    return header + struct.pack("<I4s", len(chunk), b"JSON") + chunk + rest


def _write(path: Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return path
