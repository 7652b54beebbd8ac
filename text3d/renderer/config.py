"""The settings of the renderers: cameras, the occupancy grid and the volume renderer (plain dataclasses; no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from text3d.config import Range


@dataclass
class CameraConfig:
    """Random training views and the evaluation orbit (threestudio-like defaults)."""

    height: Annotated[int, Range(1, 8192)] = 64
    """Rendered image height in pixels."""
    width: Annotated[int, Range(1, 8192)] = 64
    """Rendered image width in pixels."""
    batch_size: Annotated[int, Range(1, 256)] = 1
    """Views rendered per training step."""
    azimuth_range: Annotated[tuple[float, float], Range(-360.0, 360.0)] = (-180.0, 180.0)
    """Training azimuth range, degrees."""
    elevation_range: Annotated[tuple[float, float], Range(-90.0, 90.0)] = (-10.0, 45.0)
    """Training elevation range, degrees."""
    distance_range: Annotated[tuple[float, float], Range(0.0, 1000.0, min_exclusive=True)] = (1.5, 2.0)
    """Training camera distance from the origin, scene units."""
    fov_range: Annotated[tuple[float, float], Range(0.0, 180.0, min_exclusive=True, max_exclusive=True)] = (40.0, 70.0)
    """Training vertical field of view, degrees."""
    fixed_framing: bool = False
    """Move each training camera with its field of view so that the scene at the origin fills the same part of every
    image: the camera stands at distance * tan(eval_fov / 2) / tan(fov / 2), the distance drawn from distance_range
    (threestudio's relative radius). Then an image's framing cannot make a small object pass for a large one."""
    eval_views: Annotated[int, Range(1, 360)] = 8
    """Number of views on the evaluation orbit (previews, turntable)."""
    eval_elevation: Annotated[float, Range(-90.0, 90.0)] = 15.0
    """Elevation of the evaluation orbit, degrees."""
    eval_distance: Annotated[float, Range(0.0, 1000.0, min_exclusive=True)] = 1.75
    """Distance of the evaluation orbit."""
    eval_fov: Annotated[float, Range(0.0, 180.0, min_exclusive=True, max_exclusive=True)] = 55.0
    """Vertical field of view of the evaluation orbit, degrees."""

    def validate(self) -> None:
        for name in ("azimuth_range", "elevation_range", "distance_range", "fov_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} has min {lo} > max {hi}")
        if not (0 < self.fov_range[0] and self.fov_range[1] < 180 and 0 < self.eval_fov < 180):
            raise ValueError("fields of view must be in (0, 180) degrees")
        if self.distance_range[0] <= 0 or self.eval_distance <= 0:
            raise ValueError("camera distances must be > 0")


@dataclass
class OccupancyConfig:
    """Occupancy grid updated from the field's density during training (pure torch)."""

    enabled: bool = True
    """Skip samples in empty cells."""
    resolution: Annotated[int, Range(4, 256)] = 64
    """Cells per axis over the scene cube."""
    update_every: Annotated[int, Range(1, 1_000_000)] = 16
    """Training steps between grid updates."""
    warmup_steps: Annotated[int, Range(0, 1_000_000)] = 64
    """Steps before the first update; until then every cell counts as occupied."""
    threshold: Annotated[float, Range(0.0, 1.0)] = 0.01
    """A cell is occupied when its density gives at least this opacity over one render step."""
    decay: Annotated[float, Range(0.0, 1.0)] = 0.95
    """Per-update decay of the running max density, so cells can become empty again."""


@dataclass
class RendererConfig:
    """Volume renderer: sampling, background and shading."""

    num_samples: Annotated[int, Range(2, 2048)] = 64
    """Stratified samples per ray across the scene cube."""
    perturb: bool = True
    """Jitter samples within their strata during training (evaluation always uses strata midpoints)."""
    chunk_rays: Annotated[int, Range(1, 1 << 24)] = 16384
    """Rays per chunk when rendering without gradients (bounds memory of large previews)."""
    background: Literal["solid", "mlp"] = "solid"
    """Background behind the object: a solid colour or a small MLP of the view direction."""
    background_color: Annotated[tuple[float, float, float], Range(0.0, 1.0)] = (1.0, 1.0, 1.0)
    """Solid background colour (RGB in [0, 1])."""
    shading: Literal["albedo", "lambertian", "textureless", "random"] = "albedo"
    """Shading during training; 'random' draws one mode per step from shading_probs."""
    shading_probs: Annotated[tuple[float, float, float], Range(0.0)] = (0.2, 0.4, 0.4)
    """Probabilities of albedo / lambertian / textureless when shading is 'random'."""
    ambient: Annotated[float, Range(0.0, 1.0)] = 0.1
    """Ambient light fraction for lambertian and textureless shading."""
    occupancy: OccupancyConfig = field(default_factory=OccupancyConfig)
    """Space skipping."""
    backend: Literal["auto", "torch", "cuda"] = "auto"
    """Alpha compositing: 'torch' (dense, any device), 'cuda' (text3d's kernel over occupied samples only), or
    'auto' (cuda on a CUDA device when it builds)."""

    def validate(self) -> None:
        if any(not 0.0 <= c <= 1.0 for c in self.background_color):
            raise ValueError("background_color values must be in [0, 1]")
        if any(p < 0 for p in self.shading_probs) or sum(self.shading_probs) <= 0:
            raise ValueError("shading_probs must be non-negative with a positive sum")
