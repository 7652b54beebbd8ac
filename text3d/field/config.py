"""The settings of the fields: the hash-grid encoding and the NeRF (plain dataclasses; no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

from text3d.config import Range


@dataclass
class HashGridConfig:
    """Multiresolution hash grid (defaults: Instant-NGP / threestudio)."""

    n_levels: Annotated[int, Range(1, 32)] = 16
    """Number of resolution levels."""
    features_per_level: Annotated[int, Range(1, 8)] = 2
    """Feature channels stored per level."""
    log2_hashmap_size: Annotated[int, Range(4, 24)] = 19
    """log2 of the number of table entries per level."""
    base_resolution: Annotated[int, Range(2, 1 << 16)] = 16
    """Grid resolution of the coarsest level."""
    max_resolution: Annotated[int, Range(2, 1 << 16)] = 2048
    """Grid resolution of the finest level (the per-level scale is derived from it)."""
    init_scale: Annotated[float, Range(0.0)] = 1e-4
    """Table entries start uniform in [-init_scale, init_scale]."""
    backend: Literal["auto", "torch", "cuda", "tcnn", "cpp"] = "auto"
    """'torch' (reference, any device), 'cuda' (text3d's kernels, same table), 'tcnn' (tiny-cuda-nn, its own
    parameters), 'cpp' (text3d's kernels built for the CPU with g++, same table), or 'auto' (on CUDA the first that
    runs of cuda, tcnn, torch; on the CPU cpp, else torch)."""

    def validate(self) -> None:
        if self.max_resolution < self.base_resolution:
            raise ValueError("max_resolution must be >= base_resolution")

    @property
    def per_level_scale(self) -> float:
        if self.n_levels == 1:
            return 1.0
        return math.exp(math.log(self.max_resolution / self.base_resolution) / (self.n_levels - 1))

    @property
    def output_dim(self) -> int:
        return self.n_levels * self.features_per_level


@dataclass
class FieldConfig:
    """Hash-grid NeRF: density and view-independent albedo inside a cube of half-size ``radius``."""

    encoding: HashGridConfig = field(default_factory=HashGridConfig)
    """Hash-grid encoding of positions."""
    radius: Annotated[float, Range(0.0, min_exclusive=True)] = 1.0
    """Half-size of the axis-aligned scene cube [-radius, radius]^3."""
    hidden_dim: Annotated[int, Range(8, 512)] = 64
    """Width of the MLP's hidden layers."""
    hidden_layers: Annotated[int, Range(0, 8)] = 1
    """Number of hidden layers of the MLP."""
    density_activation: Literal["softplus", "exp"] = "softplus"
    """Activation of the raw density: shifted softplus (softplus(x - 1)) or truncated exp."""
    blob_density: Annotated[float, Range(0.0)] = 10.0
    """Magic3D 'blob' bias: density added at the centre, falling linearly to 0 at blob_radius (0 disables)."""
    blob_radius: Annotated[float, Range(0.0, min_exclusive=True)] = 0.5
    """Radius at which the blob bias reaches zero (it is negative beyond)."""
    density_radius: Annotated[float, Range(0.0)] = 0.0
    """Density fades to 0 over the last 10 % before this distance from the centre: a bound the field cannot learn
    past, against score distillation's scene-filling slabs and fog (0: none; only the scene cube bounds it)."""
