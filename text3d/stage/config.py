"""The settings of the stages and their shared training loop (plain dataclasses; no torch)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

from text3d.config import Range
from text3d.field.config import FieldConfig
from text3d.renderer.config import CameraConfig, RendererConfig


@dataclass
class TrainerConfig:
    """Settings shared by every stage's optimisation loop."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to run: 'auto' picks CUDA when available."""
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    """Autocast precision for the forward pass (accelerate); 'fp16' also scales the loss."""
    grad_clip: Annotated[float, Range(0.0)] = 0.0
    """Clip the global gradient norm to this value (0 disables)."""
    log_every: Annotated[int, Range(1, 1_000_000)] = 10
    """Steps between progress updates (losses are read back from the device only then)."""
    preview_every: Annotated[int, Range(0, 1_000_000)] = 200
    """Steps between preview images (0 disables)."""
    checkpoint_every: Annotated[int, Range(0, 1_000_000)] = 200
    """Steps between checkpoints (0: only when the stage ends or stops)."""
    keep_checkpoints: Annotated[int, Range(1, 1000)] = 2
    """Checkpoints kept per stage; older ones are deleted once a newer one is safely on disk."""
    cpu_threads: Annotated[int, Range(0, 1024)] = 0
    """CPU threads for torch (0: $OMP_NUM_THREADS if set, else the cores idle when the job starts). Results are
    bit-for-bit repeatable only at the same thread count: fix it to repeat a run exactly."""


STAGE_NAMES = ("coarse", "geometry", "texture")
"""The stages in the order a run trains them; each has a config section of that name."""


ShadingChoice = Literal["albedo", "lambertian", "textureless", "normal", "random"]


MESH_SHADINGS = ("albedo", "lambertian", "textureless", "normal")


@dataclass
class StageGuideSettings:
    """A stage's own values of the SDS guide's settings of the same names; None keeps guide.sds's."""

    guidance_scale: Annotated[float, Range(0.0)] | None = None
    """Classifier-free guidance scale of this stage's SDS (None: guide.sds.guidance_scale)."""
    chroma_gradient: Annotated[float, Range(0.0, 1.0)] | None = None
    """Share of the SDS gradient's chroma that reaches this stage's renders (None: guide.sds.chroma_gradient)."""
    chroma_gradient_delay: Annotated[int, Range(0, 1_000_000)] | None = None
    """Steps at the start of this stage whose SDS gradient keeps no chroma (None: guide.sds.chroma_gradient_delay)."""

    def own_guide_settings(self) -> dict[str, object]:
        """``{name: value}`` of the guide settings this stage sets itself (those not None)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(StageGuideSettings)}
        return {name: value for name, value in values.items() if value is not None}


@dataclass
class FillGuardConfig:
    """Start the coarse stage over, with other guide settings, when its field has grown out to the views' edges."""

    edge_opacity: Annotated[float, Range(0.0, 1.0)] = 0.0
    """Start over when the evaluation views' mean opacity along their edges (the outer tenth of each side) is above
    this at check_step (0 never checks): an object leaves a margin, a field filling the scene does not."""
    check_step: Annotated[int, Range(1, 1_000_000)] = 100
    """The step after which the field is checked (once; a stage that started over is not checked again)."""
    retry: StageGuideSettings = dataclasses.field(default_factory=StageGuideSettings)
    """The guide settings of the second start, over the stage's own (None keeps the stage's value)."""


@dataclass
class CoarseConfig(StageGuideSettings):
    """The coarse NeRF stage."""

    enabled: bool = True
    """Train this stage; when false it trains nothing and loads its last checkpoint, which the run must then have
    (the same rule for every stage, see text3d.app.chain)."""
    max_steps: Annotated[int, Range(0, 1_000_000)] = 10000
    """Optimisation steps."""
    lr_encoding: Annotated[float, Range(0.0, min_exclusive=True)] = 0.01
    """Learning rate of the hash-grid table."""
    lr_network: Annotated[float, Range(0.0, min_exclusive=True)] = 0.001
    """Learning rate of the MLP and the background."""
    lambda_orientation: Annotated[float, Range(0.0)] = 0.0
    """Weight of the orientation loss (normals facing away from the camera; computes normals)."""
    lambda_opacity: Annotated[float, Range(0.0)] = 0.0
    """Weight of the opacity sparsity loss (mean rendered opacity)."""
    lambda_opacity_entropy: Annotated[float, Range(0.0)] = 0.0
    """Weight of the opacity entropy loss (pushes each pixel's opacity towards 0 or 1)."""
    fill_guard: FillGuardConfig = dataclasses.field(default_factory=FillGuardConfig)
    """The guard against a field that fills the scene (off by default)."""
    # `field` is also the key's name, hence dataclasses.field below.
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    """The radiance field."""
    renderer: RendererConfig = dataclasses.field(default_factory=RendererConfig)
    """The volume renderer."""
    camera: CameraConfig = dataclasses.field(default_factory=CameraConfig)
    """Random training views and the evaluation orbit."""


@dataclass
class GeometryConfig(StageGuideSettings):
    """DMTet geometry refinement."""

    enabled: bool = True
    """Train this stage; when false it trains nothing and loads its last checkpoint if the run has one, else the
    coarse surface passes on as it is."""
    max_steps: Annotated[int, Range(0, 1_000_000)] = 3000
    """Optimisation steps."""
    tet_resolution: Annotated[int, Range(4, 192)] = 128
    """Cubes per axis of the tetrahedral grid (each split into 6 tetrahedra)."""
    iso_level: Annotated[float, Range(0.0, min_exclusive=True)] | None = None
    """Density of the coarse field taken as the initial surface (None: the level matched to its opacity)."""
    lr_sdf: Annotated[float, Range(0.0, min_exclusive=True)] = 1e-3
    """Learning rate of the per-vertex SDF."""
    lr_deform: Annotated[float, Range(0.0, min_exclusive=True)] = 1e-3
    """Learning rate of the per-vertex deformation."""
    deform_scale: Annotated[float, Range(0.0, 1.0)] = 0.25
    """Largest vertex deformation, in grid cells (larger can invert the thin Kuhn tetrahedra)."""
    shading: ShadingChoice = "random"
    """Shading of training renders; 'random' draws albedo/lambertian/textureless/normal with shading_probs."""
    shading_probs: Annotated[tuple[float, float, float, float], Range(0.0)] = (0.25, 0.25, 0.25, 0.25)
    """Probabilities of albedo / lambertian / textureless / normal when shading is 'random'."""
    lambda_normal_consistency: Annotated[float, Range(0.0)] = 0.1
    """Weight of the normal-consistency regulariser (smooth surfaces)."""
    lambda_laplacian: Annotated[float, Range(0.0)] = 0.0
    """Weight of the uniform Laplacian regulariser."""
    camera: CameraConfig = dataclasses.field(default_factory=lambda: CameraConfig(height=512, width=512))
    """Training views (random views for SDS; reconstruction uses the dataset's)."""

    def validate(self) -> None:
        if any(p < 0 for p in self.shading_probs) or sum(self.shading_probs) <= 0:
            raise ValueError("shading_probs must be non-negative with a positive sum")


@dataclass
class TextureConfig(StageGuideSettings):
    """Albedo refinement on the frozen mesh."""

    enabled: bool = True
    """Train this stage; when false it trains nothing and loads its last checkpoint if the run has one, else the
    coarse field's albedo is baked as it is."""
    max_steps: Annotated[int, Range(0, 1_000_000)] = 2000
    """Optimisation steps."""
    lr_encoding: Annotated[float, Range(0.0, min_exclusive=True)] = 0.01
    """Learning rate of the albedo field's hash grid."""
    lr_network: Annotated[float, Range(0.0, min_exclusive=True)] = 0.001
    """Learning rate of the albedo field's MLP."""
    shading: Literal["albedo", "lambertian", "random"] = "random"
    """Shading of training renders; 'random' draws albedo or lambertian with shading_probs."""
    shading_probs: Annotated[tuple[float, float], Range(0.0)] = (0.5, 0.5)
    """Probabilities of albedo / lambertian when shading is 'random'."""
    camera: CameraConfig = dataclasses.field(default_factory=lambda: CameraConfig(height=512, width=512))
    """Training views (random views for SDS; reconstruction uses the dataset's)."""
