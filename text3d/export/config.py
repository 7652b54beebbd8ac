"""The settings of the export: the coarse isosurface, the textured mesh files and where the asset stands in them
(plain dataclasses; no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from text3d.config import Range

MeshFormat = Literal["glb", "obj", "usdz"]
Compression = Literal["meshopt", "draco", "webp"]


@dataclass
class IsosurfaceConfig:
    """Marching cubes on the coarse field's density."""

    resolution: Annotated[int, Range(16, 512)] = 128
    """Grid samples per axis over the scene cube."""
    threshold: Annotated[float, Range(0.0, min_exclusive=True)] | None = None
    """Density iso-level of the surface (None: the level whose silhouettes match the field's rendered opacity)."""


@dataclass
class TextureExportConfig:
    """UV unwrapping, texture baking and the textured mesh files."""

    texture_size: Annotated[int, Range(64, 8192)] = 1024
    """Side of the baked texture in texels."""
    padding: Annotated[int, Range(0, 64)] = 4
    """Texels between charts in the atlas, and texels the baked charts are grown by so seams don't bleed."""
    max_faces: Annotated[int, Range(100, 10_000_000)] = 30_000
    """Face budget: a mesh above it is decimated to it (quadric edge collapse) before UV unwrapping."""
    timeout: Annotated[float, Range(0.0, min_exclusive=True)] = 300.0
    """Seconds xatlas may take (it runs in a child process) before the export stops with an error."""
    roughness: Annotated[float, Range(0.0, 1.0)] = 0.9
    """glTF roughness factor: baked albedo has no specular information, so mostly matte (metallic is 0)."""
    formats: tuple[MeshFormat, ...] = ("glb", "obj")
    """Files to write: glb (one binary glTF), obj (OBJ + MTL + PNG), usdz (AR Quick Look; needs usd-core)."""


@dataclass
class ExportConfig:
    """Files written at the end of a run, in glTF's axes (+Y up, the front — what the camera at azimuth 0 sees —
    facing +Z, metres; OBJ in the same axes)."""

    isosurface: IsosurfaceConfig = field(default_factory=IsosurfaceConfig)
    """Coarse mesh extraction from the NeRF's density (coarse.glb, and the mesh when geometry is disabled)."""
    texture: TextureExportConfig = field(default_factory=TextureExportConfig)
    """UV unwrapping, texture baking and the mesh files."""
    height_m: Annotated[float, Range(0.0, 10_000.0)] = 1.0
    """Height of the asset in the files, metres along +Y (0: the scene's own units, the field's cube being
    2 x coarse.field.radius across)."""
    origin: Literal["bottom", "center"] = "bottom"
    """The files' origin: 'bottom' (the centre of the asset's footprint: it stands on y = 0) or 'center' (its
    bounding box's centre)."""
    compress: tuple[Compression, ...] = ()
    """A compressed copy of model.glb beside it, by glTF Transform's gltf-transform (npm @gltf-transform/cli):
    meshopt or draco geometry, webp textures, e.g. [meshopt, webp] -> model.meshopt.webp.glb (empty: none)."""
    turntable_frames: Annotated[int, Range(0, 3600)] = 60
    """Frames of the turntable video (0: no video)."""
    turntable_resolution: Annotated[int, Range(16, 2048)] = 512
    """Side of the turntable video and contact sheet images, pixels."""

    def validate(self) -> None:
        if len(set(self.compress)) < len(self.compress):
            raise ValueError("compress names a step twice")
        if {"meshopt", "draco"} <= set(self.compress):
            raise ValueError("compress takes one geometry codec: meshopt or draco")
        if self.compress and "glb" not in self.texture.formats:
            raise ValueError("compress makes a copy of model.glb: it needs glb in export.texture.formats")
