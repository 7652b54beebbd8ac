"""The settings of the export: the coarse isosurface and the textured mesh files (plain dataclasses; no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from text3d.config import Range

MeshFormat = Literal["glb", "obj"]


@dataclass
class IsosurfaceConfig:
    """Marching cubes on the coarse field's density."""

    resolution: Annotated[int, Range(16, 512)] = 128
    """Grid samples per axis over the scene cube."""
    threshold: Annotated[float, Range(0.0, min_exclusive=True)] = 10.0
    """Density iso-level of the surface."""


@dataclass
class TextureExportConfig:
    """UV unwrapping, texture baking and the textured mesh files."""

    texture_size: Annotated[int, Range(64, 8192)] = 1024
    """Side of the baked texture in texels."""
    padding: Annotated[int, Range(0, 64)] = 4
    """Texels between charts in the atlas, and texels the baked charts are grown by so seams don't bleed."""
    max_faces: Annotated[int, Range(100, 10_000_000)] = 100_000
    """Meshes above this face count are decimated to it before UV unwrapping."""
    timeout: Annotated[float, Range(0.0, min_exclusive=True)] = 300.0
    """Seconds xatlas may take (it runs in a child process) before the export stops with an error."""
    roughness: Annotated[float, Range(0.0, 1.0)] = 0.9
    """glTF roughness factor: baked albedo has no specular information, so mostly matte (metallic is 0)."""
    formats: tuple[MeshFormat, ...] = ("glb", "obj")
    """Files to write: glb (one binary glTF), obj (OBJ + MTL + PNG)."""
